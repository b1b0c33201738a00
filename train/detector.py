"""Train the perturbation detector on the ISM residual r = x - ISM(x).

Recipe:
- Each batch: B clean images (label 0, level 0) and their attacked copies from the gray-box pool
  (label 1, level k = the pool's epsilon level); the residual goes through the frozen ISM.
- Loss = BCE(attacked) + 0.5 * CE(level). AdamW + one-cycle, random flips, bf16 autocast.
- Calibration: the threshold is the (1 - target_fpr) quantile of P(attacked) on held-out clean
  validation images, stored in config.json with the weights.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ism.eval.metrics import auroc
from ism.models.detector import DetectorConfig, PerturbationDetector
from ism.models.ism_net import ISMNetwork

from .advpool import ATTACKS, LEVELS, build_pool, load_classifier
from .common import Run
from .ism_net import pairs


@dataclass
class DetectorTrainConfig:
    epochs: float = 3
    batch_size: int = 128
    lr: float = 2e-3
    level_weight: float = 0.5
    target_fpr: float = 0.01


DETECTOR_RECIPES = {"cpu": DetectorTrainConfig(epochs=1)}   # --recipe cpu (train/common.py: CPU_RECIPE)


def load_ism(run) -> ISMNetwork:
    """The deployed ISM, recorded as what ``run`` trains against."""
    folder = run.uses(run.out.parent / "ism")
    return ISMNetwork.from_pretrained(str(folder)).to(run.device).eval().requires_grad_(False)


def train_detector(run: Run, tc: DetectorTrainConfig | None = None) -> PerturbationDetector:
    tc = run.configure(tc or replace(DETECTOR_RECIPES.get(run.recipe, DetectorTrainConfig())))
    clf = load_classifier(run)
    ism = load_ism(run)
    pool = build_pool(run, clf, run.train, "train")
    cfg = DetectorConfig(image_size=clf.config.image_size, channels=clf.config.in_channels,
                         eps_levels=[0.0, *LEVELS], target_fpr=tc.target_fpr)
    model = PerturbationDetector(cfg).to(run.device).to(memory_format=torch.channels_last)
    opt, sched, steps_per_epoch, total, start = run.one_cycle(
        model, tc.lr, run.epochs(tc.epochs), tc.batch_size, state=run.load_ckpt())
    batches = run.loop(lambda seed: pairs(run, run.train, pool, True, tc.batch_size, seed=seed),
                       steps_per_epoch, total, start)
    net = run.parallel(model)
    for step, epoch, (x, xa, y, j), epoch_end, bar in batches:
        flip = (torch.rand(len(x), device=x.device) < 0.5).view(-1, 1, 1, 1)
        inp = torch.cat([torch.where(flip, x.flip(3), x), torch.where(flip, xa.flip(3), xa)])
        target = torch.cat([torch.zeros(len(x)), torch.ones(len(x))]).to(run.device)
        level = torch.cat([torch.zeros(len(x), dtype=torch.long), pool.level[j]]).to(run.device)
        model.train()
        with torch.no_grad(), run.autocast():
            r = (inp - ism(inp).float())
        with run.autocast():
            a, lv = net(r)
            loss = F.binary_cross_entropy_with_logits(a.float(), target) + tc.level_weight * F.cross_entropy(lv.float(), level)
        run.update(loss, opt, sched, model, step, epoch, epoch_end, bar)
    model.eval()
    # calibrate on held-out clean validation images
    p_val = scores(run, model, ism, run.val.float())
    model.config.threshold = float(torch.quantile(p_val, 1 - tc.target_fpr))
    metrics = measure_detector(run, model, ism, clf)
    metrics["threshold (calibrated on held-out clean val)"] = round(model.config.threshold, 6)
    run.publish(model, "Perturbation detector", metrics=metrics, train_config=tc, summary=(
        "Classifies the ISM residual x - ISM(x) as clean or attacked (sigmoid of the first output) and "
        "estimates the attack strength (softmax over eps levels). The decision threshold is calibrated for a "
        f"{tc.target_fpr:.0%} false-positive rate on held-out clean images and stored in config.json."))
    return model


@torch.no_grad()
def scores(run: Run, model, ism, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch_size):
        x = run.to(images[i:i + batch_size].float())
        with run.autocast():
            a, _ = model(x - ism(x).float())
        out.append(torch.sigmoid(a.float()).cpu())
    return torch.cat(out)


@torch.no_grad()
def measure_detector(run: Run, model, ism, clf) -> dict:
    sub = run.measure_set(2000)
    pool = build_pool(run, clf, sub, "test-sample")
    p_clean = scores(run, model, ism, sub.float())
    p_adv = scores(run, model, ism, pool.adv)
    thr = model.config.threshold
    m = {f"false-positive rate on clean test [{len(sub)} images]": round(float((p_clean > thr).float().mean()), 4)}
    for a, name in enumerate(ATTACKS):
        for k, eps in enumerate(LEVELS, start=1):
            sel = (pool.attack == a) & (pool.level == k)
            if sel.any():
                m[f"AUROC {name.upper()} eps={eps:.3g} [{int(sel.sum())} attacked vs {len(sub)} clean]"] = round(
                    auroc(p_clean, p_adv[sel]), 4)
                m[f"detection rate {name.upper()} eps={eps:.3g}"] = round(float((p_adv[sel] > thr).float().mean()), 4)
    run.log(**{k.split(" [")[0]: v for k, v in m.items()})
    return m
