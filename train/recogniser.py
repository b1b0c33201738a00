"""Train the data-set recogniser (ism/models/recogniser.py): the served data set's pictures against the other
data set's, so the app can say when an uploaded picture is outside the defense's data set.

    python -m train recogniser --dataset cifar10 --out weights/cifar10-paper     # the other set: ../celeba

Recipe: every batch holds ``batch_size`` training pictures of each data set (the other one read from
``other_data``, default the folder beside ``--data``), both at the recogniser's 32x32, with random crops of
60-100% of the picture (uploads are framed in many ways) and flips; cross-entropy, AdamW + one-cycle.
Measured on both test sets (never trained on) and on pictures of neither kind (noise, flat colours).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ism.data.datasets import DATASETS, load_split
from ism.models.recogniser import DataSetRecogniser, RecogniserConfig

from .common import Run


@dataclass
class RecogniserTrainConfig:
    epochs: float = 2            # passes over the served data set's training pictures
    batch_size: int = 64         # pictures of each data set per batch
    lr: float = 3e-3
    other_data: str = ""         # the other data set's root; "" = the folder beside --data named after it


# CelebA has 9,000 training faces to CIFAR-10's 45,000 pictures: as many steps (1,410) take 10 passes
RECOGNISER_RECIPES = {"celeba": RecogniserTrainConfig(epochs=10)}


def small(images: torch.Tensor, size: int, batch: int = 2000) -> torch.Tensor:
    """uint8 pictures at ``size`` x ``size`` (uint8)."""
    if images.shape[-1] == size:
        return images
    out = [F.interpolate(images[i:i + batch].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).round().clamp(0, 255).to(torch.uint8) for i in range(0, len(images), batch)]
    return torch.cat(out)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random crop of 60-100% of each side, resized back, and a random flip (floats in [0, 1])."""
    n, _, s, _ = x.shape
    scale = 0.6 + 0.4 * torch.rand(n, generator=g)
    off = (1 - scale)[:, None] * torch.rand(n, 2, generator=g)
    theta = torch.zeros(n, 2, 3)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = (off + scale[:, None] / 2) * 2 - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def train_recogniser(run: Run, tc: RecogniserTrainConfig | None = None) -> DataSetRecogniser:
    tc = run.configure(tc or replace(RECOGNISER_RECIPES.get(run.cfg.dataset, RecogniserTrainConfig())))
    own = run.cfg.dataset
    other = next(d for d in sorted(DATASETS) if d != own)
    other_root = Path(tc.other_data or Path(run.cfg.data).parent / other)
    cfg = RecogniserConfig(kinds=[own, other])
    size = cfg.image_size
    pics = {own: small(run.train.images, size),
            other: small(load_split(other_root, "train", dataset=other).images, size)}
    model = DataSetRecogniser(cfg).to(run.device)
    opt, sched, steps_per_epoch, total, start = run.one_cycle(
        model, tc.lr, run.epochs(tc.epochs), tc.batch_size, state=run.load_ckpt())

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps_per_epoch):
            x = torch.cat([pics[k][torch.randint(len(pics[k]), (tc.batch_size,), generator=g)] for k in cfg.kinds])
            y = torch.arange(len(cfg.kinds)).repeat_interleave(tc.batch_size)
            yield run.to(augment(x.float() / 255, g)), y.to(run.device)

    for step, ep, (x, y), epoch_end, bar in run.loop(epoch, steps_per_epoch, total, start):
        model.train()
        loss = F.cross_entropy(model(x), y)
        run.update(loss, opt, sched, model, step, ep, epoch_end, bar)
    model.eval()
    tests = {own: run.test.images, other: load_split(other_root, "test", dataset=other).images}
    metrics = measure_recogniser(run, model, tests)
    run.publish(model, "Data-set recogniser", metrics=metrics, train_config=tc, summary=(
        f"Tells {DATASETS[own].title} pictures from {DATASETS[other].title} pictures "
        "(a small CNN at 32x32). The app calls an uploaded picture outside the defense's data set when the "
        f"recogniser gives its data set ({own}) a probability under 0.5. It knows these two kinds of picture only."),
        data=f"; the other data set: {other} training pictures from `{other_root}`")
    return model


@torch.no_grad()
def likeness(run: Run, model: DataSetRecogniser, images: torch.Tensor, kind: str, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model.likeness(run.to(images[i:i + batch].float() / 255), kind).cpu()
                      for i in range(0, len(images), batch)])


def measure_recogniser(run: Run, model: DataSetRecogniser, tests: dict) -> dict:
    """Of each test set, the share called outside each served data set; and of pictures of neither kind."""
    own, other = model.config.kinds
    g = torch.Generator().manual_seed(run.cfg.seed)
    size = tests[own].shape[-1]
    neither = {"uniform noise": (torch.rand(500, 3, size, size, generator=g) * 255).to(torch.uint8),
               "flat colours": (torch.rand(500, 3, 1, 1, generator=g) * 255).to(torch.uint8).expand(-1, -1, size, size)}
    m = {}
    for name, images in [*tests.items(), *neither.items()]:
        p = likeness(run, model, images, own)
        what = f"{name} test pictures" if name in tests else name
        m[f"{what} called outside {own} [{len(images)} pictures]"] = round(float((p < 0.5).float().mean()), 4)
    run.log(**{k.split(" [")[0]: v for k, v in m.items()})
    return m
