"""Small metrics used by training cards and the evaluation."""
from __future__ import annotations

import math

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1], (N,)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def auroc(scores_neg: torch.Tensor, scores_pos: torch.Tensor) -> float:
    """Area under the ROC curve: P(positive score > negative score), ties counted half."""
    neg, pos = scores_neg.double().flatten(), scores_pos.double().flatten()
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("auroc needs at least one negative and one positive score")
    s = torch.cat([neg, pos])
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    # mid-rank of each unique value: ranks are 1-based, ties share the mean of their ranks
    ends = counts.cumsum(0).double()
    mid = ends - (counts.double() - 1) / 2
    ranks = mid[inverse]
    n0, n1 = len(neg), len(pos)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def roc_points(scores_neg: torch.Tensor, scores_pos: torch.Tensor, points: int = 101) -> dict:
    """ROC curve sampled at ``points`` thresholds (score quantiles): {"fpr": [...], "tpr": [...]},
    from (1, 1) down to (0, 0), rounded to 4 decimals (compact enough for a results JSON)."""
    neg, pos = scores_neg.double().flatten(), scores_pos.double().flatten()
    qs = torch.quantile(torch.cat([neg, pos]), torch.linspace(0, 1, points, dtype=torch.double))
    th = torch.cat([torch.tensor([-float("inf")], dtype=torch.double), qs])
    fpr = [(neg > t).double().mean().item() for t in th]
    tpr = [(pos > t).double().mean().item() for t in th]
    return {"fpr": [round(v, 4) for v in fpr], "tpr": [round(v, 4) for v in tpr]}


def noise_margin(p1: float, n1: int, p2: float, n2: int) -> float:
    """How far apart two accuracies p1, p2 measured on n1, n2 images must be to differ beyond sampling
    noise: two standard errors of the difference, at least 0.005."""
    return max(0.005, 2 * math.sqrt(p1 * (1 - p1) / max(n1, 1) + p2 * (1 - p2) / max(n2, 1)))
