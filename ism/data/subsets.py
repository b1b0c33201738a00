"""Subsets of a data set by rule, never by outcome. Test sets are sorted by class (CIFAR-10's
ImageFolder order), so a prefix of the index list holds the first classes only: every subset here
spreads over the whole list."""
from __future__ import annotations

import torch


def evenly_spaced(n: int, k: int | None) -> torch.Tensor:
    """min(n, k) indices spread evenly over range(n) (index i * n // k): deterministic, and
    class-balanced on a class-sorted set; all of range(n) if k is None."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.arange(k) * n // k


def spread(n: int, k: int | None, seed: int) -> torch.Tensor:
    """k indices drawn at random (seeded) from range(n), sorted; all if k is None."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values
