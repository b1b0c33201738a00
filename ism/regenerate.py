"""Regeneration: Defense-GAN latent optimisation (Samangouei et al. 2018), made watchable.

Find z minimising ||G(z) - target||^2 by Adam from several starts (restart 0 from the ISM code
when given, the others drawn from the generator's latent prior), keep the best restart per image,
and stop when every image's error is below ``tol`` or after ``steps`` updates. Every iteration is
yielded so a UI can show the sample sharpening into the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ism.models.gan import Generator


@dataclass
class RegenerationStep:
    step: int              # 0 = the starting latent, before any update
    image: torch.Tensor    # (N, C, H, W) in [0, 1]: best image so far (over restarts and steps)
    error: torch.Tensor    # (N,) mean squared error of ``image`` against the target
    restart: torch.Tensor  # (N,) index of the restart that produced ``image``
    done: bool             # True on the last step yielded
    reason: str = ""       # on the last step: why it stopped, in words


def regenerate_steps(generator: Generator, target: torch.Tensor, *, z0: torch.Tensor | None = None,
                     steps: int = 30, restarts: int = 4, lr: float = 0.05, tol: float = 0.002,
                     seed: int = 0):
    """Yield a ``RegenerationStep`` per iteration; the last one is the result.

    Arguments:
        generator: maps (M, latent_dim) -> (M, C, H, W).
        target: (N, C, H, W) images in [0, 1] to match (already validated).
        z0: (N, latent_dim) starting latent for restart 0 (e.g. the ISM code), or None.
        steps: maximum number of Adam updates (>= 0).
        restarts: number of starts per image (>= 1).
        lr, tol: Adam step size; stop once every image's error is below ``tol``.
        seed: seeds the random restarts, so the same call gives the same frames.
    """
    if steps < 0 or restarts < 1:   # checked at the call, not at the first next()
        raise ValueError(f"need steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    return _iterate(generator, target, z0, steps, restarts, lr, tol, seed)


def _iterate(generator, target, z0, steps, restarts, lr, tol, seed):
    n, device = len(target), target.device
    g = torch.Generator().manual_seed(seed)
    starts = [] if z0 is None else [z0.detach().float()]
    k = restarts - len(starts)
    if k > 0:
        starts.append(generator.sample_latent(n * k, g).to(device))
    z = torch.cat(starts)[: n * restarts].clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    tgt = target.detach().repeat(restarts, 1, 1, 1)
    was_training = generator.training
    generator.eval()
    try:
        for step in range(steps + 1):
            with torch.enable_grad():
                img = generator(z)
                err = (img - tgt).pow(2).flatten(1).mean(1)
                total = err.sum()   # inside enable_grad: callers may hold torch.no_grad()
            per = err.detach().view(restarts, n)
            cur_err, cur = per.min(0)
            cur_img = img.detach().view(restarts, n, *img.shape[1:])[cur, torch.arange(n, device=device)]
            if step == 0:
                best_err, best, image = cur_err, cur, cur_img
            else:  # keep the best iterate seen so far, so the error shown never rises
                better = cur_err < best_err
                best_err = torch.where(better, cur_err, best_err)
                best = torch.where(better, cur, best)
                image = torch.where(better.view(-1, 1, 1, 1), cur_img, image)
            matched = bool((best_err < tol).all())
            done = step == steps or matched
            reason = "" if not done else (
                f"matched the target within tolerance (mean squared difference below {tol:g}) at iteration {step} "
                f"of {steps}" if matched else
                f"used all {steps} iterations (mean squared difference {float(best_err.max()):.4f}; it stops early "
                f"below {tol:g})")
            yield RegenerationStep(step, image, best_err, best, done, reason)
            if done:
                return
            (grad,) = torch.autograd.grad(total, z)
            z.grad = grad
            opt.step()
    finally:
        generator.train(was_training)
