"""Attacks, all from torchattacks, behind one table and one factory with the paper's epsilon scale.

Epsilon is the L-infinity bound on [0, 1] images (0.3 is about 77/255). Every attack is called
the torchattacks way: ``make_attack("pgd", model, eps=0.3)(images, labels)``. Everything the project says or
decides about one attack (its label on the page, its norm, whether epsilon bounds it, its steps, this server's
cap on its work, its note for the page and its builder) is its row of ``TABLE``: one place per attack, as
torchattacks keeps one class per attack.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchattacks
from torch import nn

_SEEDED = threading.Lock()
MAX_STEPS = 50            # an attack's steps per run, on the page, in a link and through the API
CW_C, CW_KAPPA, CW_LR, CW_MIN_STEPS = 1.0, 0, 0.01, 10   # CW's own settings (its builder and its note)
DEEPFOOL_OVERSHOOT = 0.02
SQUARE_QUERIES_PER_STEP = 100
MAX_SQUARE_QUERIES = 1000  # Square's queries per run on this server (steps x 100, capped): 5,000 took ~40 s of a core


@dataclass(frozen=True)
class Attack:
    """One attack's facts."""
    name: str                    # internal and API name ("pgd")
    label: str                   # the page's name ("PGD")
    norm: str                    # "L∞" or "L2"
    uses_eps: bool               # False: a minimal-perturbation attack (L2), epsilon does not bound it
    build: Callable              # (model, eps, steps, alpha, seed) -> torchattacks.Attack
    steps: int = 10              # its steps when picked on the page (CW: 50, measured in results/story.md)
    max_queries: int = 0         # > 0: this server caps its model queries per run (Square)

    def run_steps(self, steps: int) -> int:
        """The steps it really runs on this server (Square's queries are capped)."""
        if self.max_queries:
            return min(int(steps), self.max_queries // SQUARE_QUERIES_PER_STEP)
        return int(steps)

    def note(self, eps: float, steps: int) -> str:
        """What the page's epsilon and steps settings mean for this attack, with this server's cap on its work."""
        steps = int(steps)
        if self.name == "cw":
            return (f"**{self.label}** looks for the *smallest* L2 perturbation that changes the answer: epsilon does "
                    f"not apply. Its own settings: c = {CW_C:g}, κ = {CW_KAPPA}, {max(steps, CW_MIN_STEPS)} Adam steps "
                    f"at learning rate {CW_LR} (at most {MAX_STEPS} per run on this server).")
        if self.name == "deepfool":
            return (f"**{self.label}** steps to the nearest decision boundary and {DEEPFOOL_OVERSHOOT:.0%} past it: "
                    f"epsilon does not apply. Its own settings: at most {steps} steps, overshoot {DEEPFOOL_OVERSHOOT}.")
        units = (f"Each pixel may change by at most {eps * 255:.1f} of 255 brightness steps.\n\n<details><summary>in "
                 f"numbers</summary>\n\nε = {eps:.4f} = {eps * 255:.1f}/255 ({self.norm}, pixel values in [0, 1])."
                 "\n\n</details>")
        if self.max_queries:
            return (f"**Square** is black-box: it only queries the outputs, "
                    f"{self.run_steps(steps) * SQUARE_QUERIES_PER_STEP:,} queries (steps x {SQUARE_QUERIES_PER_STEP}; at "
                    f"most {self.max_queries:,} per run on this server). " + units)
        return units


TABLE: dict[str, Attack] = {a.name: a for a in (
    Attack("fgsm", "FGSM", "L∞", True, lambda m, eps, steps, alpha, seed: torchattacks.FGSM(m, eps=eps)),
    Attack("pgd", "PGD", "L∞", True, lambda m, eps, steps, alpha, seed: torchattacks.PGD(
        m, eps=eps, alpha=alpha, steps=steps, random_start=True)),
    Attack("bim", "BIM", "L∞", True, lambda m, eps, steps, alpha, seed: torchattacks.BIM(
        m, eps=eps, alpha=alpha, steps=steps)),
    Attack("mifgsm", "MI-FGSM", "L∞", True, lambda m, eps, steps, alpha, seed: torchattacks.MIFGSM(
        m, eps=eps, alpha=alpha, steps=steps)),
    Attack("cw", "CW (L2)", "L2", False, lambda m, eps, steps, alpha, seed: torchattacks.CW(
        m, c=CW_C, kappa=CW_KAPPA, steps=max(steps, CW_MIN_STEPS), lr=CW_LR), steps=50),
    Attack("deepfool", "DeepFool (L2)", "L2", False, lambda m, eps, steps, alpha, seed: torchattacks.DeepFool(
        m, steps=steps, overshoot=DEEPFOOL_OVERSHOOT)),
    Attack("square", "Square (black-box)", "L∞", True, lambda m, eps, steps, alpha, seed: torchattacks.Square(
        m, eps=eps, n_queries=max(steps, 1) * SQUARE_QUERIES_PER_STEP, seed=seed), max_queries=MAX_SQUARE_QUERIES),
)}
ATTACKS = tuple(TABLE)                                    # the internal names, in the page's order
LABELS = {a.label: a.name for a in TABLE.values()}        # the page's names


def attack(name: str) -> Attack:
    """The attack called ``name`` (internal, any case, or the page's label), or a ValueError naming the choices."""
    key = LABELS.get(name, str(name).lower())
    if key not in TABLE:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return TABLE[key]


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
    spec = attack(name)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1], got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return spec.build(model, eps, steps, alpha if alpha is not None else 2.5 * eps / steps, seed)


def parse_eps(text: str) -> float:
    """"0.3" or "8/255" -> the float (the command lines write epsilons both ways)."""
    num, _, den = text.strip().partition("/")
    return float(num) / float(den or 1)
