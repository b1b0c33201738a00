"""Assemble the defense: choose from validation measurements which image the final
classification reads for inputs the detector flags (purified, regenerated or their mean), and
write ``<out>/defense.json``.

The choice is measured on held-out validation images (never the test set): the pool's attacked
copies (FGSM / PGD-10 against the classifier, eps 2/255 .. 0.4) and the clean images themselves.
"""
from __future__ import annotations

import json
from dataclasses import asdict

import torch

from ism.defense import FINAL_INPUTS, DefenseConfig, load_defense, save_defense_config

from .advpool import build_pool
from .common import Run


def train_pipeline(run: Run, n_val: int = 1000) -> DefenseConfig:
    root = run.out.parent
    cfg = DefenseConfig(dataset=run.cfg.dataset, seed=run.cfg.seed)
    save_defense_config(root, cfg)  # provisional, so load_defense works
    d = load_defense(root, device=run.device)
    sub = run.val.subset(torch.arange(0, len(run.val), max(1, len(run.val) // n_val)))
    pool = build_pool(run, d.classifier, sub, "val-sample")
    correct = {k: 0 for k in ("clean", *FINAL_INPUTS)}
    flagged_clean = flagged_adv = 0
    for i in range(0, len(sub), 250):
        j = torch.arange(i, min(i + 250, len(sub)))
        x, xa, y = run.to(sub.float(j)), run.to(pool.adv[j].float()), sub.labels[j].to(run.device)
        with torch.no_grad():
            correct["clean"] += (d.classifier(x).argmax(1) == y).sum().item()
            flagged_clean += d.detection(x).attacked.sum().item()
            flagged_adv += d.detection(xa).attacked.sum().item()
            pur = d.purify(xa)
        *_, last = d.regenerate_steps(xa)
        images = {"purified": pur, "regenerated": last.image, "mean": (pur + last.image) / 2}
        with torch.no_grad():
            for k, im in images.items():
                correct[k] += (d.classifier(im).argmax(1) == y).sum().item()
        run.log(done=int(j[-1]) + 1, **{k: round(v / (int(j[-1]) + 1), 4) for k, v in correct.items()})
    n = len(sub)
    acc = {k: round(v / n, 4) for k, v in correct.items()}
    best = max(FINAL_INPUTS, key=lambda k: (acc[k], -FINAL_INPUTS.index(k)))
    cfg.final_input = best
    cfg.measurements = {
        "validation images": n,
        "classifier accuracy, clean": acc["clean"],
        **{f"classifier accuracy on {k} attacked images": acc[k] for k in FINAL_INPUTS},
        "detector flag rate, clean": round(flagged_clean / n, 4),
        "detector flag rate, attacked": round(flagged_adv / n, 4),
        "regeneration": f"{cfg.regen_steps} steps x {cfg.regen_restarts} restarts",
        "chosen": best,
    }
    save_defense_config(root, cfg)
    run.log(chosen=best, **acc)
    print(json.dumps(asdict(cfg), indent=2))
    return cfg
