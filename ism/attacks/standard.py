"""Attacks, all from torchattacks, behind one factory with the paper's epsilon scale.

Epsilon is the L-infinity bound on [0, 1] images (0.3 is about 77/255). Every attack is called
the torchattacks way: ``make_attack("pgd", model, eps=0.3)(images, labels)``.
"""
from __future__ import annotations

import contextlib
import threading

import torch
import torchattacks
from torch import nn

ATTACKS = ("fgsm", "pgd", "bim", "mifgsm", "cw", "deepfool", "square")
_SEEDED = threading.Lock()


@contextlib.contextmanager
def seeded(seed: int):
    """Run an attack reproducibly without touching anyone else's randomness: torchattacks draws its
    random starts from the global torch RNG, so the block holds a process-wide lock (one seeded
    attack at a time: two visitors' runs cannot reseed each other mid-attack) and the global RNG
    state is restored afterwards."""
    with _SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_attack(name: str, model: nn.Module, eps: float, steps: int = 10, alpha: float | None = None,
                seed: int = 0) -> torchattacks.attack.Attack:
    """Build a torchattacks attack.

    Arguments:
        name: one of ``ATTACKS``.
        model: maps [0, 1] NCHW images to logits (the classifier, or a whole defense).
        eps: L-inf bound in [0, 1] units (ignored by the L2/minimal attacks cw and deepfool).
        steps: iterations for iterative attacks (default 10, i.e. PGD-10).
        alpha: step size; default 2.5 * eps / steps (Madry et al.), eps for FGSM.
    """
    name = name.lower()
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1], got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name == "pgd":
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    if name == "bim":
        return torchattacks.BIM(model, eps=eps, alpha=alpha, steps=steps)
    if name == "mifgsm":
        return torchattacks.MIFGSM(model, eps=eps, alpha=alpha, steps=steps)
    if name == "cw":
        return torchattacks.CW(model, c=1.0, kappa=0, steps=max(steps, 10), lr=0.01)
    if name == "deepfool":
        return torchattacks.DeepFool(model, steps=steps, overshoot=0.02)
    return torchattacks.Square(model, eps=eps, n_queries=max(steps, 1) * 100, seed=seed)


def parse_eps(text: str) -> float:
    """"0.3" or "8/255" -> the float (the command lines write epsilons both ways)."""
    num, _, den = text.strip().partition("/")
    return float(num) / float(den or 1)
