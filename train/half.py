"""``python -m train.half weights/cifar10 [--data DIR] [--device cuda]``: store a defense's weights in float16.

Every ``*/model.safetensors`` under the folder (the ablation and baseline components too) has its
float32 tensors rewritten as float16 (integer tensors, e.g. BatchNorm's batch counters, are kept),
and ``checksums.json`` is updated. Loading casts them back to the model's float32 parameters.

The pipeline's clean test accuracy is measured before and after: if it moves by more than
``--max-drop`` (0.2 points, the project's rule), nothing is rewritten and the command fails.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import safetensors.torch
import torch

from ism.data.datasets import DATASETS, load_split
from ism.defense import load_defense
from ism.hub import LINEAGE_NAME, WEIGHTS_NAME, record_checksum, sha256


@torch.no_grad()
def pipeline_accuracy(root: Path, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    d = load_defense(root, device=device)
    correct = 0
    for i in range(0, len(labels), 500):
        x = images[i:i + 500].to(device).float() / 255
        correct += (d.predict(x).argmax(1).cpu() == labels[i:i + 500]).sum().item()
    return correct / len(labels)


def halve(root: Path, only: list[str] | None = None) -> list[Path]:
    """Rewrite every float32 tensor of every component under ``root`` (or of the component folders
    ``only``, relative to it) as float16; returns the files."""
    files = sorted(p for p in root.rglob(WEIGHTS_NAME)
                   if only is None or p.parent.relative_to(root).as_posix() in only)
    renamed = {}
    for f in files:
        before = sha256(f)
        state = safetensors.torch.load_file(str(f))
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
        meta = safetensors.safe_open(str(f), "pt").metadata()
        safetensors.torch.save_file(state, str(f), metadata=meta)
        record_checksum(root, f.parent)
        renamed[before] = sha256(f)
    lineage = root / LINEAGE_NAME   # what was trained against the float32 file now means its float16 copy
    if lineage.is_file():
        recorded = json.loads(lineage.read_text())
        for artefact, against in recorded.items():
            for dep, sha in against.items():
                against[dep] = renamed.get(sha, sha)
        lineage.write_text(json.dumps(recorded, indent=2) + "\n")
    return files


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.half", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="a defense folder, e.g. weights/cifar10")
    p.add_argument("--data", default=None, help="data root (default: the data set's offline copy)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-drop", type=float, default=0.002, help="largest accepted change of clean accuracy")
    p.add_argument("--only", nargs="+", default=None, metavar="COMPONENT",
                   help="convert these component folders only (e.g. generator detector); default all")
    a = p.parse_args(argv)
    root = Path(a.weights)
    dataset = json.loads((root / "defense.json").read_text())["dataset"]
    test = load_split(a.data or DATASETS[dataset].root, "test", dataset=dataset)
    device = torch.device(a.device)
    before = pipeline_accuracy(root, test.images, test.labels, device)
    # everything halve() rewrites, to put back if float16 costs too much accuracy
    kept = [*root.rglob(WEIGHTS_NAME), *root.rglob("checksums.json"), root / LINEAGE_NAME]
    backup = {f: f.read_bytes() for f in kept if f.is_file()}
    halve(root, a.only)
    after = pipeline_accuracy(root, test.images, test.labels, device)
    res = {"pipeline clean accuracy, float32": before, "pipeline clean accuracy, float16": after,
           "images": len(test.labels)}
    print(json.dumps(res))
    if abs(after - before) > a.max_drop:
        for f in [*root.rglob("checksums.json"), root / LINEAGE_NAME]:
            if f.is_file() and f not in backup:
                f.unlink()
        for f, b in backup.items():
            f.write_bytes(b)
        print(f"float16 moved clean accuracy by {after - before:+.4f} (> {a.max_drop}): weights kept in float32",
              file=sys.stderr)
        sys.exit(1)
    return res


if __name__ == "__main__":
    main()
