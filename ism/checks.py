"""Input validation at the API boundary: one clear error instead of a stack trace deep inside."""
from __future__ import annotations

import torch

MAX_BATCH = 4096  # larger batches are almost always a mistake (a whole data set passed at once)


def check_images(x, *, channels: int, size: int, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a float image batch in [0, 1], shape (N, channels, size, size).

    Raises ``TypeError`` for a non-tensor or non-float dtype and ``ValueError`` for a wrong
    shape, an empty or huge batch, NaN/Inf or values outside [0, 1].
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}"
            + (" (divide uint8 images by 255)" if x.dtype == torch.uint8 else "")
        )
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0)")
    if x.shape[0] > MAX_BATCH:
        raise ValueError(f"{name} has {x.shape[0]} images; split it into batches of at most {MAX_BATCH}")
    if tuple(x.shape[1:]) != (channels, size, size):
        raise ValueError(
            f"{name} must have shape (N, {channels}, {size}, {size}), got {tuple(x.shape)}"
        )
    with torch.no_grad():
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or Inf values")
        lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must have values in [0, 1], got min {lo:.4g}, max {hi:.4g}")
    return x


def check_labels(y, n: int, num_classes: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32):
        raise TypeError("labels must be an integer torch.Tensor of shape (N,)")
    if tuple(y.shape) != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}]")
    return y
