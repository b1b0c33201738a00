"""The whole defense as a target for an adaptive white-box attacker (Athalye et al. 2018).

- Purification (ISM) is differentiable: exact gradients flow through it.
- Regeneration is an optimisation loop: BPDA treats it as the identity in the backward pass
  (``final = purified + (regenerated - purified).detach()``).
- Regeneration's random restarts change every call (a fresh seed per forward), so torchattacks'
  ``EOTPGD`` averages gradients over them (EOT).
- The detector's hard gate is replaced by its probability: logits = p * defended + (1 - p) *
  undefended, so the attacker is pushed both to fool the classifier and to slip past the detector.
  Without a gate (``config.gate = False``) the target is simply classifier(final image).
"""
from __future__ import annotations

import itertools

import torch
import torchattacks

from ism.defense import Defense
from ism.models.inference import InferenceOnly


class AdaptiveTarget(InferenceOnly):
    """x (N, C, H, W) in [0, 1] -> logits, differentiable end to end (BPDA + soft gating)."""

    def __init__(self, defense: Defense, seed: int = 0):
        super().__init__()
        self.defense = defense
        self._seeds = itertools.count(seed)
        self.eval()  # torchattacks restores the mode it found; never leave the shared defense training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.defense
        purified = d.ism(x)
        final = d.defended_image(x, purified, bpda=True, seed=next(self._seeds))
        if not d.config.gate:
            return d.classifier(final)
        logit, _ = d.detector(x - purified)
        p = torch.sigmoid(logit.float()).unsqueeze(1)
        return p * d.classifier(final) + (1 - p) * d.classifier(x)


def make_adaptive_attack(defense: Defense, eps: float, steps: int = 10, eot_iter: int = 2,
                         alpha: float | None = None, seed: int = 0) -> torchattacks.attack.Attack:
    """PGD with BPDA through purification/regeneration and EOT over regeneration's restarts.

    ``eot_iter`` applies only when regeneration is in the path; a defense whose classifier reads
    the purified image is deterministic, so EOT would repeat the same gradient and it is set to 1.
    """
    if not 0.0 <= eps <= 1.0 or steps < 1 or eot_iter < 1:
        raise ValueError(f"need 0 <= eps <= 1, steps >= 1, eot_iter >= 1; got {eps}, {steps}, {eot_iter}")
    if defense.config.final_input == "purified":
        eot_iter = 1
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    return torchattacks.EOTPGD(AdaptiveTarget(defense, seed), eps=eps, alpha=alpha, steps=steps,
                               eot_iter=eot_iter, random_start=True)
