"""What every trainer shares: run config, device and bf16 autocast, batching, checkpoints, cards.

Under ``torchrun --nproc_per_node N python -m train ...`` a run is data-parallel: every process
holds the model, wrapped in DistributedDataParallel by ``Run.parallel`` (gloo on CPU, nccl with one
GPU per process), and takes its 1/N share of each training batch, so the global batch size and
the schedule stay those of a single process. Process 0 alone writes checkpoints, logs and weights.
"""
from __future__ import annotations

import ast
import contextlib
import json
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ism import distributed
from ism.data.datasets import Split, dataset_info, load_split, train_val_split
from ism.data.subsets import evenly_spaced, spread


@dataclass
class RunConfig:
    dataset: str = "cifar10"              # cifar10 | celeba (ism.data.datasets.DATASETS)
    recipe: str | None = None             # train configs: the data set's (None), "paper": Table 1 classifier
                                          # with distillation + FGSM-RS, ISM by Eq. 3, no `robust` stage, or
                                          # "cpu": CIFAR-10's hardened recipe sized for 2 CPU cores (CPU_RECIPE)
    data: str | None = None               # data root; default: the offline copy of the data set
    out: str | None = None                # one sub-folder per component; default weights/<dataset>
    image_size: int | None = None         # model resolution; default: the data set's (32 / 64)
    device: str = "auto"                  # auto = cuda if available
    seed: int = 0
    batch_size: int = 256
    epochs: float | None = None           # None: the component's default
    limit: int | None = None              # use only the first N training/test images (smoke tests; the
                                          # model cards' test metrics then use SMOKE_MEASURE images)
    val_per_class: int = 500              # held out of train for calibration and model choice
    ckpt_dir: str = ".cache/ckpt"
    resume: bool = False
    download: bool = False
    bf16: bool | None = None              # bf16 autocast; None: where it is fast (a GPU, or a CPU with native
                                          # bf16; without it, e.g. AVX2 only, bf16 convolutions run 5x slower)
    threads: int | None = None
    overrides: tuple[str, ...] = ()       # FIELD=VALUE for the component's train config (--set)


SMOKE_MEASURE = 16
SMOKE_REFINE_EPOCHS = 2     # a --limit smoke run's refiner passes at most (the recipe's 24, each measured, took
                            # 3 of the paper recipe's 4 smoke-test minutes)

# CPU_RECIPE, ``python -m train all --recipe cpu`` (CIFAR-10): the hardened recipe cut to fit four hours on
# two CPU cores without bf16 (the shipped recipe takes about 11 h on an AVX2-only EPYC, README: Retrain).
# Each component's table holds its part: classifier airbench94's widths 64/256/256 for 6 epochs (15 at
# 96/384/384 shipped), ISM 2 epochs (8), robust 0.5 (2), detector 1 (3), GAN 1 (2), baselines MagNet 1 /
# DDSA 0.5 (4 / 2); the pipeline as shipped. Sized from step times measured on that EPYC (classifier 3.1 s a
# step, ISM ~3.5 s, detector ~1 s, GAN ~3 s; the gray-box pool ~0.5 h at these widths).
# Reached there (first complete run, results/cifar10-cpu-recipe.md): 2 h 51 min in all (classifier 76 min,
# ISM 49, robust 20, detector 3, GAN 13, baselines 8, pipeline 3); pipeline clean 0.668 on the test set
# (the shipped recipe: 0.771), AutoAttack 8/255 through the pipeline 0.272 and on the classifier alone
# 0.358 (500 images; the shipped recipe: 0.356 / 0.404 on the same images).


def bf16_enabled(flag: bool | None, device: torch.device) -> bool:
    """``--bf16``/``--no-bf16`` as given; unset: on where bf16 is fast. On a CPU without native bf16 (no
    AVX512-BF16/AMX; measured on an AVX2-only EPYC) a bf16 convolution takes the slow reference path:
    1.7 s against fp32's 0.35 s for one 32x64x64x64 conv forward + backward."""
    if flag is not None:
        return flag
    return device.type == "cuda" or (device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def command_line(argv=None) -> str:
    return "python -m train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


class Run:
    """State of one training run: device, data, checkpoints, log."""

    def __init__(self, cfg: RunConfig, name: str, command: str | None = None):
        info = dataset_info(cfg.dataset)
        cfg.data = cfg.data or info.root
        cfg.out = cfg.out or f"weights/{cfg.dataset}"
        cfg.image_size = cfg.image_size or info.image_size
        self.cfg, self.name = cfg, name
        self.command = command or command_line()  # recorded in the model card
        self.upstream: dict[str, str] = {}         # weights this run trained against: {path under out: sha256}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = distributed.init(cfg.device)
        self.main = distributed.is_main()
        seed_all(cfg.seed)
        full = load_split(cfg.data, "train", download=cfg.download, dataset=cfg.dataset, image_size=cfg.image_size)
        self.test = load_split(cfg.data, "test", download=cfg.download, dataset=cfg.dataset, image_size=cfg.image_size)
        if cfg.limit:
            full = full.subset(spread(len(full), cfg.limit, cfg.seed))
            self.test = self.test.subset(spread(len(self.test), cfg.limit, cfg.seed))
        vpc = min(cfg.val_per_class, max(1, len(full) // (10 * len(full.classes))))
        self.train, self.val = train_val_split(full, vpc, cfg.seed)
        self.classes = full.classes
        self.out = Path(cfg.out) / name
        self.ckpt = Path(cfg.ckpt_dir) / cfg.dataset / f"{name}.pt"
        self.start_clock()

    def start_clock(self, elapsed_s: float = 0.0) -> None:
        """Time from here (plus ``elapsed_s`` already spent) is this run's: the card's "Trained in" and
        the log's ``t``. A checkpoint carries it, so a run resumed across sessions reports its whole time."""
        self.t0 = time.time() - elapsed_s

    def autocast(self):
        if not bf16_enabled(self.cfg.bf16, self.device):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @property
    def recipe(self) -> str:
        """Key of the recipe tables (``RECIPES`` and friends): ``--recipe`` or the data set's name."""
        return self.cfg.recipe or self.cfg.dataset

    def configure(self, tc):
        """The component's train config ``tc`` with the run's ``--set FIELD=VALUE`` overrides."""
        return apply_overrides(tc, self.cfg.overrides)

    def to(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    def epochs(self, default: float) -> float:
        return self.cfg.epochs if self.cfg.epochs is not None else default

    def measure_set(self, n: int) -> Split:
        """``n`` test images spread over every class, for a model card's metrics (``SMOKE_MEASURE`` in a
        ``--limit`` smoke run, where the figures are not results and attacks on the full number dominate)."""
        n = min(n, SMOKE_MEASURE) if self.cfg.limit else n
        return self.test.subset(evenly_spaced(len(self.test), n))

    def batches(self, split: Split, shuffle: bool, batch_size: int | None = None, seed: int = 0):
        """Yield (float images in [0,1], labels) on the device."""
        bs = batch_size or self.cfg.batch_size
        n = len(split)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        for i in range(0, n, bs):
            j = self.shard(idx[i:i + bs]) if shuffle else idx[i:i + bs]
            yield self.to(split.float(j)), split.labels[j].to(self.device)

    def shard(self, j: torch.Tensor) -> torch.Tensor:
        """This process's share of a training batch (all of it with one process)."""
        return j[distributed.rank()::distributed.world()]

    def parallel(self, model: nn.Module, fn=None) -> nn.Module:
        """What a training step calls: ``fn(model, *inputs)`` (default ``model(*inputs)``), inside
        DistributedDataParallel under torchrun. ``fn`` lets a step use parts of a model (encoder,
        decoder) while DDP still sees one forward whose backward averages gradients."""
        return distributed.wrap(Forward(model, fn), self.device)

    def one_cycle(self, model, lr: float, epochs: float, batch_size: int, pct_start: float = 0.15, n: int | None = None,
                  weight_decay: float = 1e-4, state: dict | None = None, optimizer: str = "adamw"):
        """AdamW (or Nesterov SGD, ``optimizer="sgd"``) + one-cycle schedule over ``epochs``; restores
        model/optimiser/schedule from a checkpoint ``state``.
        Returns (opt, sched, steps_per_epoch, total_steps, start_step)."""
        steps_per_epoch = -(-(n or len(self.train)) // batch_size)   # n: the images an epoch passes over
        total = max(1, int(epochs * steps_per_epoch))
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay) if optimizer == "adamw" else
               torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct_start)
        start = 0
        if state:
            model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"]); start = state["step"]
        return opt, sched, steps_per_epoch, total, start

    def loop(self, make_epoch, steps_per_epoch: int, total: int, start: int = 0, desc: str = "train"):
        """Yield (step, epoch, batch, epoch_end, bar) from ``start`` to ``total``.

        ``make_epoch(seed)`` returns the batch iterator of one epoch; the seed depends only on the
        run seed and the epoch, so a resumed run sees exactly the batches it would have seen.
        """
        bar = self.steps(total, desc, start)
        it, epoch = None, -1
        for step in bar:
            e = step // steps_per_epoch
            if e != epoch:
                epoch, it = e, make_epoch(self.cfg.seed * 1000 + e)
                for _ in range(step % steps_per_epoch):
                    next(it)
            end = (step + 1) % steps_per_epoch == 0 or step + 1 == total
            yield step, epoch, next(it), end, bar

    @staticmethod
    def optimise(loss: torch.Tensor, opt, sched) -> None:
        """One optimiser step on ``loss`` and one step of its schedule."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    def update(self, loss: torch.Tensor, opt, sched, model, step: int, epoch: int, epoch_end: bool, bar,
               **log) -> None:
        """The tail of a plain training step (one model, one optimiser): optimise, show the loss every 50
        steps, and at each epoch's end log it (with ``log``) and checkpoint what ``--resume`` needs."""
        self.optimise(loss, opt, sched)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if epoch_end:
            self.log(**log, epoch=epoch, step=step + 1, loss=round(loss.item(), 5))
            self.save_ckpt(model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(), step=step + 1)

    def steps(self, total: int, desc: str, start: int = 0):
        return tqdm(range(start, total), initial=start, total=total, desc=f"{self.name}:{desc}",
                    mininterval=5, dynamic_ncols=True, disable=not self.main)

    def save_ckpt(self, **state) -> None:
        if not self.main:
            return
        self.ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save({**state, "elapsed_s": time.time() - self.t0}, tmp)
        tmp.replace(self.ckpt)

    def load_ckpt(self) -> dict | None:
        if self.cfg.resume and self.ckpt.exists():
            print(f"resuming from {self.ckpt}")
            state = torch.load(self.ckpt, map_location=self.device, weights_only=True)
            self.start_clock(state.get("elapsed_s", 0.0))
            return state
        return None

    def elapsed(self) -> str:
        return f"{(time.time() - self.t0) / 60:.1f} min on {self.device.type}" + (
            f" ({torch.get_num_threads()} threads)" if self.device.type == "cpu" else "")

    def data_note(self) -> str:
        return (f"{self.cfg.dataset} from `{self.cfg.data}`: {len(self.train)} train / {len(self.val)} "
                f"held-out validation (seed {self.cfg.seed}) / {len(self.test)} test images")

    def uses(self, folder: Path) -> Path:
        """Load-time record of a component this run trains against (its weights' sha256 goes into
        ``lineage.json`` with what this run publishes; ``load_defense`` then says when it changed).
        A missing component is a ``WeightsError`` naming the command that makes it."""
        from ism.hub import WEIGHTS_NAME, WeightsError, sha256

        f = Path(folder) / WEIGHTS_NAME
        if not f.is_file():
            stage = {"ism": "ism", "generator": "gan"}.get(Path(folder).name, "classifier")
            raise WeightsError(f"{folder} has no trained weights: run `python -m train {stage}` first")
        self.upstream[f.relative_to(Path(self.cfg.out)).as_posix()] = sha256(f)
        return Path(folder)

    def publish(self, model, title: str, summary: str, metrics: dict, train_config, folder: Path | None = None,
                data: str = "") -> None:
        """Write ``model`` as a Hub artefact (config.json + model.safetensors) and its model card,
        with the command, data, training config, time and measured metrics."""
        from ism.hub import WEIGHTS_NAME, record_checksum, record_lineage, write_card

        folder = folder or self.out
        check_replicas(model)
        if self.main:
            folder.mkdir(parents=True, exist_ok=True)
            saved = model.cpu().to(memory_format=torch.contiguous_format)
            saved.save_pretrained(folder, config=saved.config)
            record_checksum(Path(self.cfg.out), folder)
            if self.upstream:
                record_lineage(self.cfg.out, (folder / WEIGHTS_NAME).relative_to(Path(self.cfg.out)).as_posix(),
                               self.upstream)
            write_card(folder, title=f"{title} ({self.cfg.dataset})", summary=summary, command=self.command,
                       data=self.data_note() + data, metrics=metrics,
                       extra="## Training config\n```json\n" + json.dumps(asdict(train_config), indent=2) +
                             "\n```\n\n" + f"Trained in {self.elapsed()}" +
                             (f" by {distributed.world()} processes." if distributed.world() > 1 else "."))
            model.to(self.device)
        distributed.barrier()   # the next component (or process) reads these weights

    def on_main(self, fn, *args, **kwargs) -> None:
        """Run ``fn`` (a file write) in process 0 only; the others wait until it is done."""
        if self.main:
            fn(*args, **kwargs)
        distributed.barrier()

    def log(self, **kv) -> None:
        if not self.main:
            return
        log = Path(self.cfg.ckpt_dir) / "logs" / f"{self.cfg.dataset}-{self.name}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(json.dumps({"t": round(time.time() - self.t0, 1), **kv}) + "\n")
        tqdm.write(f"[{self.name}] " + " ".join(f"{k}={v}" for k, v in kv.items()))


class Forward(nn.Module):
    """``fn(model, *inputs)`` as one module (see ``Run.parallel``)."""

    def __init__(self, model: nn.Module, fn=None):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *inputs):
        return self.fn(self.model, *inputs) if self.fn is not None else self.model(*inputs)


def check_replicas(model: nn.Module) -> None:
    """Under torchrun, fail loudly if the processes' copies of ``model`` have drifted apart."""
    if distributed.world() == 1:
        return
    with torch.no_grad():
        sig = [round(float(p.detach().double().sum()), 6) for p in model.parameters()]
    sigs = distributed.gather(sig)
    if any(s != sigs[0] for s in sigs):
        raise RuntimeError("the processes' model replicas differ: gradients were not synchronised")


def apply_overrides(tc, overrides) -> object:
    """``tc`` (a dataclass) with each ``FIELD=VALUE`` of ``overrides`` set, VALUE read as the type
    of the field's current value (a Python literal for tuples and lists); ValueError names the
    fields when one is unknown or a value does not parse."""
    names = [f.name for f in fields(tc)]
    changes = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in names:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, FIELD one of the "
                             f"{type(tc).__name__} fields: {', '.join(names)}")
        changes[name] = _parse_value(text.strip(), getattr(tc, name), item)
    return replace(tc, **changes)


def _parse_value(text: str, current, item: str):
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        value = ast.literal_eval(text)
        return type(current)(value) if isinstance(current, (tuple, list)) else value
    except (ValueError, SyntaxError, TypeError):
        kind = type(current).__name__ if current is not None else "Python literal"
        raise ValueError(f"--set {item!r}: {text!r} is not a valid {kind}") from None


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def accuracy(model, run: Run, split: Split, transform=None, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for x, y in run.batches(split, False, batch_size):
        if transform is not None:
            x = transform(x, y)
        with run.autocast():
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(split)

