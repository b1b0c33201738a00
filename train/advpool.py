"""A pool of adversarial examples crafted once against the shipped classifier (gray-box).

Every training (or validation) image gets one attacked copy: attack in {FGSM, PGD-10} and
epsilon drawn uniformly from ``LEVELS`` (the detector's strength levels, 2/255 .. 0.4). Crafting
the pool once costs about the same as one epoch of PGD adversarial training and lets ISM, detector
and discriminator train without re-attacking every step. Cached under .cache/pool, keyed by the
classifier weights' hash.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from tqdm import tqdm

from ism import distributed
from ism.attacks.standard import make_attack
from ism.data.datasets import Split
from ism.folders import base_classifier_folder
from ism.models.classifier import Classifier

LEVELS = (2 / 255, 8 / 255, 0.1, 0.2, 0.3, 0.4)   # detector level k + 1 (level 0 = clean)
ATTACKS = ("fgsm", "pgd")
# The refiner's pool (issue "caught and undone", train/ism_net.py): several kinds of gray-box attack at the
# strengths a purifier must undo without changing what the image shows (CW-30 is L2 and ignores eps).
UNDO_ATTACKS = ("fgsm", "pgd", "mifgsm", "cw")
UNDO_LEVELS = tuple(e / 255 for e in (2, 4, 6, 8, 12, 16))
ATTACK_STEPS = {"cw": 30}   # iterations per attack; the others 10 (PGD-10, MI-FGSM-10)


@dataclass
class Pool:
    adv: torch.Tensor     # (N, C, H, W) float16, attacked copy of split image i
    level: torch.Tensor   # (N,) int64 in 1..len(LEVELS)
    attack: torch.Tensor  # (N,) int64 index into ATTACKS


def load_classifier(run, name: str = "") -> Classifier:
    """The raw-image classifier the gray-box pools are crafted against (see base_classifier_folder), or
    the defense's folder ``name``, recorded as what ``run`` trains against."""
    folder = run.uses(run.out.parent / name if name else base_classifier_folder(run.out.parent))
    return Classifier.from_pretrained(str(folder)).to(run.device).eval().requires_grad_(False)


def build_pool(run, classifier: Classifier, split: Split, tag: str, batch_size: int = 500,
               folder: Path | None = None, attacks: tuple = ATTACKS, levels: tuple = LEVELS) -> Pool:
    """Attack ``split`` with ``classifier`` (whose weights are in ``folder``, default the raw-image
    classifier of ``base_classifier_folder``; their hash keys the cache), each image by one of ``attacks``
    at one of ``levels`` (epsilon), drawn at random."""
    weights = (folder or base_classifier_folder(run.out.parent)) / "model.safetensors"
    key = hashlib.sha1(weights.read_bytes()).hexdigest()[:10]
    if (attacks, levels) != (ATTACKS, LEVELS):
        key += "-" + hashlib.sha1(repr((attacks, levels)).encode()).hexdigest()[:6]
    cache = Path(run.cfg.ckpt_dir) / "pool" / f"{run.cfg.dataset}-{tag}-{len(split)}-{run.cfg.seed}-{key}.safetensors"
    if not distributed.is_main():          # under torchrun, process 0 crafts the pool, the rest read it
        distributed.barrier()
        t = safetensors.torch.load_file(str(cache))
        return Pool(t["adv"], t["level"], t["attack"])
    if cache.exists():
        t = safetensors.torch.load_file(str(cache))
        distributed.barrier()
        return Pool(t["adv"], t["level"], t["attack"])
    g = torch.Generator().manual_seed(run.cfg.seed + 17)
    n = len(split)
    level = torch.randint(1, len(levels) + 1, (n,), generator=g)
    attack = torch.randint(0, len(attacks), (n,), generator=g)
    adv = torch.empty(split.images.shape, dtype=torch.float16)
    groups = [(a, lv) for a in range(len(attacks)) for lv in range(1, len(levels) + 1)]
    bar = tqdm(total=n, desc=f"{run.name}:pool-{tag}", mininterval=5, disable=not run.main)
    for a, lv in groups:
        idx = ((attack == a) & (level == lv)).nonzero().flatten()
        atk = make_attack(attacks[a], classifier, levels[lv - 1], steps=ATTACK_STEPS.get(attacks[a], 10))
        atk.set_device(run.device)
        for i in range(0, len(idx), batch_size):
            j = idx[i:i + batch_size]
            x, y = run.to(split.float(j)), split.labels[j].to(run.device)
            with torch.enable_grad(), run.autocast():
                adv[j] = atk(x, y).cpu().half()
            bar.update(len(j))
    bar.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    safetensors.torch.save_file({"adv": adv, "level": level, "attack": attack}, str(tmp))
    tmp.replace(cache)
    distributed.barrier()
    return Pool(adv, level, attack)
