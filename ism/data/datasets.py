"""Data sets as uint8 tensors in memory.

Accepted roots:
- an ImageFolder tree ``root/{train,test}/<class>/*.jpg`` (e.g. ``../shared/data/cifar10``);
- a torchvision CIFAR-10 root (``root/cifar-10-batches-py``), or ``download=True`` to fetch it;
- CelebA as shipped in ``../shared/data/celeba`` (``{train,test}/*.jpg`` + ``{train,test}_attrs.csv``),
  or a torchvision CelebA root (``root/celeba/list_attr_celeba.txt``), or ``download=True``.
  The task is one binary attribute (``Male``: classes female, male). Faces are centre-cropped to a
  square (the full width of the aligned face, vertically centred) and resized to ``image_size``
  (64 by default; antialiased), the usual CelebA-64 framing.
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


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    root: str           # the offline copy beside the repository
    image_size: int     # the model's input resolution (a config value: CelebA can go to 128 and more)
    title: str          # how results name it
    attribute: str | None = None   # CelebA: the binary attribute that is the label


DATASETS = {
    "cifar10": DatasetInfo("cifar10", "../shared/data/cifar10", 32, "CIFAR-10 (JPEG copy)"),
    "celeba": DatasetInfo("celeba", "../shared/data/celeba", 64, "CelebA, Male attribute, 64x64", "Male"),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


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


def _square(img, size: int):
    """A PIL face as a (3, size, size) uint8 tensor, framed as the app frames uploads (ism.data.images.square)."""
    from torchvision.transforms import v2

    from ism.data.images import square

    return square(v2.functional.pil_to_tensor(img.convert("RGB")), size)


def _from_celeba_folder(root: Path, split: str, size: int, attribute: str) -> Split:
    import csv

    from PIL import Image

    with open(root / f"{split}_attrs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or attribute not in rows[0]:
        raise ValueError(f"{root / f'{split}_attrs.csv'} has no {attribute!r} column")
    images = torch.stack([_square(Image.open(root / split / r["image_id"]), size) for r in rows])
    labels = torch.tensor([int(r[attribute]) > 0 for r in rows], dtype=torch.int64)
    return Split(images, labels, CELEBA_CLASSES[attribute])


def _from_torchvision_celeba(root: Path, split: str, size: int, attribute: str, download: bool) -> Split:
    from torchvision.datasets import CelebA

    ds = CelebA(str(root), split=split, target_type="attr", download=download)
    k = ds.attr_names.index(attribute)
    images = torch.stack([_square(ds[i][0], size) for i in range(len(ds))])
    return Split(images, ds.attr[:, k].to(torch.int64), CELEBA_CLASSES[attribute])


CELEBA_CLASSES = {"Male": ["female", "male"]}   # label 0 / 1 of each supported attribute


def load_split(root: str | Path, split: str = "train", *, download: bool = False, cache: bool = True,
               dataset: str | None = None, image_size: int | None = None) -> Split:
    """Load ``split`` ('train' or 'test') of ``dataset`` (CIFAR-10 or CelebA; by default recognised
    from the files under ``root``) as uint8 tensors, at ``image_size`` (the data set's default if None)."""
    import safetensors.torch

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder = root / split
    if dataset is None:
        dataset = "celeba" if (root / f"{split}_attrs.csv").is_file() or (root / "celeba").is_dir() else "cifar10"
    info = dataset_info(dataset)
    size = image_size or info.image_size
    key = hashlib.sha1(f"{root.resolve()}|{dataset}|{size}".encode()).hexdigest()[:10]
    cached = CACHE_DIR / f"{dataset}-{key}-{split}.safetensors"
    if cache and cached.exists():
        t = safetensors.torch.load_file(str(cached))
        meta = safetensors.safe_open(str(cached), "pt").metadata()
        return Split(t["images"], t["labels"], meta["classes"].split(","))
    if dataset == "celeba":
        if (root / f"{split}_attrs.csv").is_file():
            s = _from_celeba_folder(root, split, size, info.attribute)
        elif (root / "celeba").is_dir() or download:
            s = _from_torchvision_celeba(root, split, size, info.attribute, download)
        else:
            raise FileNotFoundError(f"no CelebA at {root}: expected {root}/{split}_attrs.csv and {folder}/*.jpg, "
                                    "or a torchvision CelebA root (pass --download to fetch it)")
    elif folder.is_dir():
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
