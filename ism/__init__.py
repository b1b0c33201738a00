"""ism-defense: the Instance Sparsity Mapping adversarial defense (Haque & Kang, 2021).

    from ism import load_defense
    d = load_defense("weights/cifar10")       # local folder or Hub repo id (+ revision=...)
    d.detect(x); d.purify(x); d.regenerate(x); d.predict(x)
"""
from .attacks import ATTACKS, make_attack
from .classifier import Classifier, ClassifierConfig
from .defense import Defense, DefenseConfig, Detection, load_defense
from .detector import DetectorConfig, PerturbationDetector
from .gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .hub import WeightsError
from .ism_net import ISMConfig, ISMNetwork
from .regenerate import RegenerationStep, regenerate_steps

__all__ = [
    "ATTACKS", "Classifier", "ClassifierConfig", "Defense", "DefenseConfig", "Detection", "DetectorConfig",
    "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "ISMConfig", "ISMNetwork",
    "PerturbationDetector", "RegenerationStep", "WeightsError", "load_defense", "make_attack",
    "regenerate_steps",
]
