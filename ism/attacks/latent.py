"""Latent-space attack on the regeneration step (Athalye et al. 2018's attack on Defense-GAN).

Regeneration returns some G(z) close to its target. So the attacker searches the generator's
latent space for a z whose image G(z) is within the budget of x (L-inf eps) yet misclassified,
and submits x' = x + clip(G(z) - x, -eps, eps). Regeneration of x' then lands near z, on the
generator's own misclassified image. Optimisation (Adam on z, from the ISM code of x):

    minimise  margin(classifier(G(z)), y) + c * mean(relu(|G(z) - x| - eps)^2)

where margin = logit_y - max_{j != y} logit_j (Carlini-Wagner), clamped at -kappa.

``latent_attack`` returns x' and whether G(z) itself was an in-budget misclassified image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ism.defense import Defense


@dataclass
class LatentAttackConfig:
    steps: int = 100
    lr: float = 0.05
    c: float = 1000.0      # weight of the budget penalty (MSE of the excess over eps)
    kappa: float = 2.0     # margin the attacker aims for


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return true - other


def latent_attack(defense: Defense, x: torch.Tensor, y: torch.Tensor, eps: float,
                  cfg: LatentAttackConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, C, H, W) in [0, 1], labels y (N,) -> (x' (N, C, H, W), on-manifold success (N,) bool)."""
    cfg = cfg or LatentAttackConfig()
    G, clf = defense.generator, defense.classifier
    with torch.no_grad():
        z = defense.start_latent(x).float()
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr)
    best_z, best = z.detach().clone(), torch.full((len(x),), float("inf"), device=x.device)
    for _ in range(cfg.steps):
        with torch.enable_grad():
            g = G(z)
            m = margin(clf(g), y)
            excess = ((g - x).abs() - eps).clamp_min(0).pow(2).flatten(1).mean(1)
            loss = (m.clamp_min(-cfg.kappa) + cfg.c * excess).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():  # keep the z with the lowest margin among those within budget
            inside = excess.detach() * cfg.c < 1e-3
            score = torch.where(inside, m.detach(), torch.full_like(best, float("inf")))
            better = score < best
            best = torch.where(better, score, best)
            best_z[better] = z.detach()[better]
    with torch.no_grad():
        never = best.isinf()            # no in-budget z found: submit the last one, projected
        best_z[never] = z.detach()[never]
        g = G(best_z)
        success = (best < 0) & ((g - x).abs().flatten(1).amax(1) <= eps + 1e-6)
        x_adv = (x + (g - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv, success
