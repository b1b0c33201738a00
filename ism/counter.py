"""The counter-change: the purified picture as the input moved back, by at most ``bound`` per pixel, until the
classifier reads it as it reads the ISM's reconstruction.

The ISM's auto-encoder decides what the picture shows (its blurred reconstruction survives the attack); a few
signed-gradient steps on the input then raise the classifier's margin for that class, each picture stopping as soon
as the classifier reads it so. An "anti-adversary" (Alfarra et al., "Combating Adversaries with Anti-Adversaries",
AAAI 2022), aimed at the class the ISM reads instead of the one the classifier reads. Against a gradient attack the
steps run back along the attack's own direction, so the purified picture usually ends closer to the original than
the attacked one (results/bounded-refiner.md, faces); a clean picture the ISM agrees with passes unchanged.
"""
from __future__ import annotations

import torch


def counter_change(classifier, x: torch.Tensor, label: torch.Tensor, bound: float, steps: int = 10,
                   step: float = 2 / 255, margin: float = 1.0) -> torch.Tensor:
    """``x`` (N, C, H, W) in [0, 1] moved by at most ``bound`` per pixel towards class ``label`` (N,): up to
    ``steps`` signed-gradient steps of ``step`` on the margin of ``label`` over the next class, a picture no
    longer moving once that margin reaches ``margin``. Deterministic; gradients do not flow through it (its
    callers decide how an attacker sees it: ``Defense.purified``)."""
    x = x.detach()
    rows = torch.arange(len(x), device=x.device)
    d = torch.zeros_like(x)
    with torch.enable_grad():
        for _ in range(steps):
            d.requires_grad_(True)
            z = classifier((x + d).clamp(0, 1)).float()
            m = z[rows, label] - z.scatter(1, label.view(-1, 1), float("-inf")).max(1).values
            moving = (m < margin).to(x.dtype).view(-1, 1, 1, 1)
            if not moving.any():
                d = d.detach()
                break
            (g,) = torch.autograd.grad(m.sum(), d)
            d = (d.detach() + step * g.sign() * moving).clamp(-bound, bound)
    return (x + d.detach()).clamp(0, 1)
