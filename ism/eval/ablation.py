"""The defense built up one stage at a time, for the per-stage ablation.

Weights of the intermediate classifiers live next to the deployed ones:

    <root>/ablation/plain        classifier alone: cross-entropy only (the distillation teacher)
    <root>/ablation/distilled    + defensive distillation (student, no adversarial examples)
    <root>/ablation/adversarial  + FGSM-RS adversarial training (the raw-image classifier; MagNet
                                 and DDSA protect this one)
    <root>/ablation/ism          the ISM network as trained by Eq. 3 (before adversarial training)
    <root>/classifier, <root>/ism  + PGD adversarial training of both through the ISM (deployed)
    <root>/ablation/robust.json    written by ``python -m train robust``: that stage ran (the command
                                 and config of each run), and whether it kept the weights it
                                 started from (CelebA does not: size budget)

Each stage is an ``nn.Module`` returning logits for [0, 1] images, so the same attacks run on all.
A stage whose weights are missing is skipped (and reported as such).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from ism.defense import Defense
from ism.folders import robust_trained
from ism.models.classifier import Classifier
from ism.models.ism_net import ISMNetwork


def variant(defense: Defense, classifier: nn.Module | None = None, ism: nn.Module | None = None,
            **config) -> Defense:
    """The same defense with another classifier / ISM and/or config values (modules are shared)."""
    return Defense(classifier or defense.classifier, ism or defense.ism, defense.detector, defense.generator,
                   replace(defense.config, **config))


@dataclass
class Stage:
    name: str
    model: nn.Module         # logits for [0, 1] images: what is evaluated and attacked end to end
    classifier: nn.Module    # what a gray-box attacker targets
    randomised: bool = False  # regeneration in the path: adaptive attacks use EOT
    deployed: bool = False


def ablation_stages(defense: Defense, root: str | Path) -> tuple[list[Stage], list[str]]:
    """(stages present, names of stages skipped for missing weights)."""
    root = Path(root)
    dev = next(defense.parameters()).device
    stages, skipped = [], []

    def load(sub: str):
        f = root / sub
        return Classifier.from_pretrained(str(f)).to(dev).eval() if (f / "model.safetensors").exists() else None

    plain, distilled, adv = load("ablation/plain"), load("ablation/distilled"), load("ablation/adversarial")
    clf = defense.classifier
    robust = robust_trained(root)
    if adv is None and not robust:
        adv = clf   # `train robust` never ran: the deployed classifier is the FGSM-RS one
    c = defense.config
    for name, m in (("classifier alone", plain), ("+ defensive distillation", distilled),
                    ("+ adversarial training (FGSM-RS)", adv)):
        (stages.append(Stage(name, m, m)) if m is not None else skipped.append(name))
    raw = adv if adv is not None else clf
    f = root / "ablation" / "ism"
    paper_ism = ISMNetwork.from_pretrained(str(f)).to(dev).eval() if (f / "model.safetensors").exists() else None
    if robust and (adv is None or paper_ism is None):
        skipped.append("+ ISM purification (always)")   # the weights before `train robust` were not kept
    else:
        stages.append(Stage("+ ISM purification (always)",
                            variant(defense, raw, paper_ism, gate=False, final_input="purified"), raw))
    if robust:
        stages.append(Stage("+ adversarial training of ISM + classifier (PGD through the ISM)",
                            variant(defense, clf, gate=False, final_input="purified"), clf))
    else:
        skipped.append("+ adversarial training of ISM + classifier (PGD through the ISM)")
    stages.append(Stage("+ regeneration (classifier reads G(z))",
                        variant(defense, clf, gate=False, final_input="regenerated"), clf, randomised=True))
    final = c.final_input
    stages.append(Stage(f"+ detector gating (flagged inputs -> {final})",
                        variant(defense, clf, gate=True, final_input=final), clf, randomised=final != "purified"))
    for s in stages:
        if isinstance(s.model, Defense) and s.model.classifier is clf and \
                (s.model.config.gate, s.model.config.final_input) == (c.gate, c.final_input):
            s.deployed = True
    return stages, skipped
