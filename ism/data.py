"""Data sets as uint8 tensors in memory.

Accepted roots:
- an ImageFolder tree ``root/{train,test}/<class>/*.jpg`` (e.g. ``../shared/data/cifar10``);
- a torchvision CIFAR-10 root (``root/cifar-10-batches-py``), or ``download=True`` to fetch it.
Decoded tensors are cached as safetensors under ``.cache/`` (decoding 60k JPEGs takes ~10 s).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CACHE_DIR = Path(".cache/data")


@dataclass
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "Split":
        return Split(self.images[idx], self.labels[idx], self.classes)

    def float(self, idx=slice(None)) -> torch.Tensor:
        return self.images[idx].float().div_(255)


def _from_imagefolder(folder: Path) -> Split:
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(folder))
    images = np.stack([np.asarray(ds.loader(p).convert("RGB")) for p, _ in ds.samples])
    labels = torch.tensor([t for _, t in ds.samples], dtype=torch.int64)
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, list(ds.classes))


def _from_torchvision(root: Path, train: bool, download: bool) -> Split:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=train, download=download)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes))


def load_split(root: str | Path, split: str = "train", *, download: bool = False, cache: bool = True) -> Split:
    """Load ``split`` ('train' or 'test') of CIFAR-10 from ``root`` as uint8 tensors."""
    import safetensors.torch

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder = root / split
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    cached = CACHE_DIR / f"{key}-{split}.safetensors"
    if cache and cached.exists():
        t = safetensors.torch.load_file(str(cached))
        meta = safetensors.safe_open(str(cached), "pt").metadata()
        return Split(t["images"], t["labels"], meta["classes"].split(","))
    if folder.is_dir():
        s = _from_imagefolder(folder)
    elif (root / "cifar-10-batches-py").is_dir() or download:
        s = _from_torchvision(root, split == "train", download)
    else:
        raise FileNotFoundError(
            f"no data at {root}: expected {folder}/<class>/*.jpg or {root}/cifar-10-batches-py "
            "(pass --download to fetch CIFAR-10 with torchvision)")
    if cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")   # atomic: other processes may be reading
        safetensors.torch.save_file({"images": s.images, "labels": s.labels}, str(tmp),
                                    metadata={"classes": ",".join(s.classes)})
        tmp.replace(cached)
    return s


def train_val_split(s: Split, val_per_class: int, seed: int = 0) -> tuple[Split, Split]:
    """Hold out ``val_per_class`` images of each class (fixed seed) for calibration and model choice."""
    g = torch.Generator().manual_seed(seed)
    val = []
    for c in range(len(s.classes)):
        idx = (s.labels == c).nonzero().flatten()
        val.append(idx[torch.randperm(len(idx), generator=g)[:val_per_class]])
    val = torch.cat(val)
    mask = torch.ones(len(s), dtype=torch.bool)
    mask[val] = False
    return s.subset(mask.nonzero().flatten()), s.subset(val.sort().values)


def augment(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop with reflect padding and horizontal flip, per image, on a float batch."""
    n, _, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    xp = torch.nn.functional.pad(x, (pad,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    rows = (dy.view(-1, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * pad)
    xp = xp.gather(2, rows)
    cols = (dx.view(-1, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return xp.gather(3, cols)
