"""The bounded refiner's frontier (issue "the pictures tell the truth"): every refiner of the sweep
(``train/bound_sweep.sh``, one folder per bound under ``.cache/sweep``) and the shipped paper-recipe ISM,
measured alike on ``--measure`` test images attacked by gray-box PGD-10 at 8/255 (``train.ism_net.restore_probe``:
the attacked copies are cached, so every purifier sees the same ones), on the pictures the attack fools:

    python -m train.frontier [--dataset cifar10] [--measure 1000] [--out results/bounded-refiner-cifar10.json]

Prints a markdown table (restored, PSNR of the attacked and purified pictures, the share moved closer, the
largest change, the clean pass) and writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from ism.models.ism_net import ISMNetwork

COLUMNS = ("restored", "psnr_attacked", "psnr_purified", "closer", "largest_change_255", "psnr_clean",
           "acc_ism_clean", "acc_ism_adv")


def purifiers(dataset: str, sweep: Path) -> dict[str, Path]:
    """{name: ISM folder}: the shipped paper-recipe ISM, then each bound of the sweep, smallest first."""
    found = {"shipped (unbounded)": Path(f"weights/{dataset}-paper/ism")}
    bounds = {re.search(r"-b([0-9.]+)$", str(p.parent.parent)).group(1): p.parent
              for p in sweep.glob(f"{dataset}-b*/ism/model.safetensors")}
    for b in sorted(bounds, key=float):
        found[f"b = {b}/255"] = bounds[b]
    return found


def main(argv=None) -> None:
    import torch

    from .advpool import load_classifier
    from .common import Run, RunConfig
    from .ism_net import restore_probe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--measure", type=int, default=1000)
    ap.add_argument("--sweep", default=".cache/sweep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    run = Run(RunConfig(dataset=a.dataset, out=f"weights/{a.dataset}-paper", threads=a.threads), "frontier")
    clf = load_classifier(run)
    probe = restore_probe(run, clf, a.measure)
    rows = {}
    for name, folder in purifiers(a.dataset, Path(a.sweep)).items():
        model = ISMNetwork.from_pretrained(str(folder)).to(run.device).eval().requires_grad_(False)
        with torch.no_grad():
            rows[name] = {"folder": str(folder), **probe(model)}
    print(f"| purifier ({a.measure} test images, gray-box PGD-10 8/255; figures on the fooled ones) | "
          + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(str(r.get(c)) for c in COLUMNS) + " |")
    if a.out:
        Path(a.out).write_text(json.dumps({"command": "python -m train.frontier " + " ".join(sys.argv[1:] if argv is None
                                                                                          else argv),
                                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                           "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
