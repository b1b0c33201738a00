"""``python -m ism.data.examples --dataset cifar10``: (re)write the app's example images by a stated rule.

The rule (``RULE``): the first ``per_class`` test images of each class, in file order, at the
model's resolution, saved as ``examples/<dataset>/<class>_<i>.png``. They are never chosen by
whether a model classifies them correctly, so the gallery shows the defense's real error rate.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ism.data.datasets import DATASETS, Split, load_split

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
PER_CLASS = {"cifar10": 2, "celeba": 7}
RULE = "the first {n} test images of each class, in file order (not picked by whether the model gets them right)"


def rule(dataset: str) -> str:
    return RULE.format(n=PER_CLASS[dataset])


def example_indices(split: Split, per_class: int) -> dict[str, list[int]]:
    """{class name: indices of its first ``per_class`` images in ``split``'s (file) order}."""
    return {name: (split.labels == c).nonzero().flatten()[:per_class].tolist()
            for c, name in enumerate(split.classes)}


def write_examples(split: Split, per_class: int, folder: Path) -> list[Path]:
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, idx in example_indices(split, per_class).items():
        for i, j in enumerate(idx):
            path = folder / f"{name}_{i}.png"
            write_png(split.images[j].contiguous(), str(path), compression_level=9)
            out.append(path)
    return out


def main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(prog="python -m ism.data.examples", description=__doc__)
    p.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    p.add_argument("--data", default=None, help="data root (default: the offline copy)")
    p.add_argument("--out", default=None, help="folder (default examples/<dataset>)")
    a = p.parse_args(argv)
    test = load_split(a.data or DATASETS[a.dataset].root, "test", dataset=a.dataset)
    folder = Path(a.out) if a.out else EXAMPLES_DIR / a.dataset
    for old in folder.glob("*.png"):
        old.unlink()
    paths = write_examples(test, PER_CLASS[a.dataset], folder)
    print(f"{len(paths)} examples in {folder}: {rule(a.dataset)}")
    return paths


if __name__ == "__main__":
    main()
