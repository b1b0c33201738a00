"""The whole defense as a target for an adaptive white-box attacker (Athalye et al. 2018).

- Purification (ISM) is differentiable: exact gradients flow through it.
- Regeneration is an optimisation loop: BPDA treats it as the identity in the backward pass
  (``final = purified + (regenerated - purified).detach()``).
- Regeneration's random restarts change every call (a fresh seed per forward), so torchattacks'
  ``EOTPGD`` averages gradients over them (EOT).
- The detector's hard gate is replaced by its probability: logits = p * defended + (1 - p) *
  undefended, so the attacker is pushed both to fool the classifier and to slip past the detector.
  Without a gate (``config.gate = False``) the target is simply classifier(final image).
- A defense that **refuses** every picture its detector flags (``RefusalTarget``, ``make_refusal_attack``): the
  attacker must fool the classifier and slip past the detector at once.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
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
        ism_out = d.ism(x)
        logit, level = d.detector(x - ism_out)
        start = d.coarse_read(x, d.purified(x, ism_out, bpda=True), d.detector.strength(level).detach())
        final = d.defended_image(x, start, bpda=True, seed=next(self._seeds))
        z = counter_guided(d, d.classifier(final), x, ism_out)
        if not d.config.gate:
            return z
        p = torch.sigmoid(logit.float()).unsqueeze(1)
        return p * z + (1 - p) * d.classifier(x)


def counter_guided(d: Defense, logits: torch.Tensor, x: torch.Tensor, ism_out: torch.Tensor) -> torch.Tensor:
    """``logits`` of the picture the defense reads, as an attacker through a counter-change defense sees them: their
    values, with the gradient of the classifier on ISM(x) and on x together. The counter-change turns the input to
    the class the classifier reads on ISM(x), within its bound: the attacker moves that reading, and the input's own
    so that the counter-change reaches it (the classifier's gradient at the counter-changed picture alone left a
    quarter of the validation faces standing)."""
    if not d.config.counter_bound:
        return logits
    guide = d.classifier(ism_out) + d.classifier(x)
    return logits.detach() + guide - guide.detach()


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


class RefusalTarget(InferenceOnly):
    """The defense that refuses every picture its detector flags, as a target: x -> log-probabilities
    (1 - p) * softmax(classifier(what the defense reads)) + p * onehot(label), p the detector's probability
    moved so that it is 1/2 at its threshold. A refused picture counts as the attack failing, so an attacker that
    raises the loss on the true label must fool the classifier and stay below the detector's threshold at once.
    Set ``labels`` before each call (``make_refusal_attack`` does)."""

    def __init__(self, defense: Defense, seed: int = 0):
        super().__init__()
        self.defense, self.labels = defense, None
        self._seeds = itertools.count(seed)
        t = min(max(defense.threshold, 1e-6), 1 - 1e-6)
        self._shift = math.log(t / (1 - t))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.defense
        ism_out = d.ism(x)
        logit, level = d.detector(x - ism_out)
        s = (logit.float() - self._shift).unsqueeze(1)         # > 0: flagged (refused)
        # what the defense reads when the detector lets the picture through: with a gate, the input as it is
        start = d.coarse_read(x, d.purified(x, ism_out, bpda=True), d.detector.strength(level).detach())
        read = x if d.config.gate else d.defended_image(x, start, bpda=True, seed=next(self._seeds))
        z = d.classifier(read) if d.config.gate else counter_guided(d, d.classifier(read), x, ism_out)
        logq = torch.log_softmax(z.float(), 1)
        # in logs, so that a confident detector (p = 1 in float32) still passes a gradient: log((1 - p) q_j) for
        # every class, and for the true label log((1 - p) q_y + p)
        out = F.logsigmoid(-s) + logq
        y = self.labels.view(-1, 1)
        return out.scatter(1, y, torch.logaddexp(out.gather(1, y), F.logsigmoid(s)))


def make_refusal_attack(defense: Defense, eps: float, steps: int = 10, eot_iter: int = 2,
                        alpha: float | None = None, seed: int = 0):
    """``attack(x, y)``: PGD against the defense that refuses what its detector flags (``RefusalTarget``; BPDA
    and EOT through regeneration as in ``make_adaptive_attack``). ``attack.eot_iter``: the EOT samples used."""
    if not 0.0 <= eps <= 1.0 or steps < 1 or eot_iter < 1:
        raise ValueError(f"need 0 <= eps <= 1, steps >= 1, eot_iter >= 1; got {eps}, {steps}, {eot_iter}")
    target = RefusalTarget(defense, seed)
    pgd = torchattacks.EOTPGD(target, eps=eps, alpha=alpha if alpha is not None else 2.5 * eps / steps, steps=steps,
                              eot_iter=1 if defense.config.final_input == "purified" or defense.config.gate
                              else eot_iter, random_start=True)

    def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target.labels = y
        try:
            return pgd(x, y)
        finally:
            target.labels = None

    attack.eot_iter = pgd.eot_iter
    return attack
