"""ism-defense: the Instance Sparsity Mapping adversarial defense (Haque & Kang, 2021).

    from ism import load_defense
    d = load_defense("weights/cifar10")       # local folder or Hub repo id (+ revision=...)
    d.detect(x); d.purify(x); d.regenerate(x); d.predict(x)

Layout, by concern; imports run downwards only (tests/test_layout.py checks it):

    ism/app/       the Gradio demo (request handling, UI, serving limits, diagram)       top
    ism/eval/      the evaluation (sections, command, report, sanity checks, plots)
    ism/attacks/   torchattacks wrappers, the adaptive (BPDA + EOT) and latent attacks
    ism/defense.py, ism/regenerate.py   the pipeline: detect, purify, regenerate, predict
    ism/models/    classifier, ISM network, GAN, detector, baselines
    ism/data/      data sets, uploaded images, the gallery's examples
    ism/hub.py, ism/checks.py, ism/distributed.py   weights loading and checksums, input checks,
                   torchrun helpers                                                    bottom

``python -m ism.eval`` and ``python -m ism.eval.gallery`` are the commands (ism/eval/command.py,
ism/eval/gallery.py); training lives in the ``train`` package beside this one.
"""
from ism.attacks.standard import ATTACKS, make_attack
from ism.defense import Defense, DefenseConfig, Detection, load_defense
from ism.hub import WeightsError
from ism.models.classifier import Classifier, ClassifierConfig
from ism.models.detector import DetectorConfig, PerturbationDetector
from ism.models.gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from ism.models.ism_net import ISMConfig, ISMNetwork
from ism.regenerate import RegenerationStep, regenerate_steps

__all__ = [
    "ATTACKS", "Classifier", "ClassifierConfig", "Defense", "DefenseConfig", "Detection", "DetectorConfig",
    "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "ISMConfig", "ISMNetwork",
    "PerturbationDetector", "RegenerationStep", "WeightsError", "load_defense", "make_attack",
    "regenerate_steps",
]
