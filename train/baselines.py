"""Train the paper's baselines, MagNet and DDSA, on the same data, protecting the same classifier.

``python -m train baselines`` writes ``<out>/baselines/magnet`` and ``<out>/baselines/ddsa``.
The protected classifier is the raw-image one (Table 1, distillation + FGSM-RS:
``<out>/ablation/adversarial``, or ``<out>/classifier`` before ``train robust`` ran).

Recipes (see ism/models/baselines.py for the architectures):
- MagNet: the auto-encoder learns x + N(0, 0.025) -> x (MSE, Adam); detector thresholds are the
  (1 - drop_rate) quantiles of each score on held-out clean validation images.
- DDSA: learns {x, x + N(0, 0.05), x'} -> x with MSE + beta * KL sparsity of its code, x' taken
  from the gray-box pool (FGSM / PGD-10 against the protected classifier, eps 2/255 .. 0.4).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ism.folders import base_classifier_folder
from ism.models.baselines import DDSA, DDSAConfig, MagNet, MagNetAutoencoder, MagNetConfig, Purified

from .advpool import build_pool, load_classifier
from .common import Run, accuracy
from .ism_net import encode_decode, pairs


@dataclass
class BaselineTrainConfig:
    magnet_epochs: float = 4
    ddsa_epochs: float = 2
    lr: float = 1e-3
    batch_size: int = 128


# per data set (not per recipe: it is the data set's size that sets the epochs). CIFAR-10: 4 / 2 epochs
# of 45,000 images = 1,400 / 700 steps. CelebA has 9,000 training faces, so 4 MagNet epochs are 284
# steps: its auto-encoder stopped at MSE 0.066 and its reformer made the classifier read every face as
# male (0.29 on 2,000 test faces); 20 epochs (CIFAR-10's 1,420 steps) reach MSE 0.007 and 0.90.
# DDSA keeps 2 epochs (142 steps; purified clean faces read at 0.86): on 2 CPU cores at 64x64 its
# steps take 7 s each, so CIFAR-10's step count would cost 85 minutes.
BASELINE_RECIPES = {"celeba": BaselineTrainConfig(magnet_epochs=20),
                    "cpu": BaselineTrainConfig(magnet_epochs=1, ddsa_epochs=0.5)}   # CPU_RECIPE (train/common.py)


def baseline_recipe(dataset: str, recipe: str | None = None) -> BaselineTrainConfig:
    """The data set's epochs, unless the recipe (``--recipe cpu``) has its own."""
    return replace(BASELINE_RECIPES.get(recipe) or BASELINE_RECIPES.get(dataset, BaselineTrainConfig()))


def train_baselines(run: Run, tc: BaselineTrainConfig | None = None) -> None:
    tc = run.configure(tc or baseline_recipe(run.cfg.dataset, run.cfg.recipe))
    folder = base_classifier_folder(run.out.parent)
    clf = load_classifier(run)
    c = clf.config
    root = run.out.parent / "baselines"

    ae = MagNetAutoencoder(MagNetConfig(channels=c.in_channels)).to(run.device)
    _fit(run, ae, tc, tc.magnet_epochs, "magnet", lambda x, xa: x + ae.config.noise * torch.randn_like(x))
    magnet = MagNet(ae.eval(), clf)
    calibrate_magnet(run, magnet)
    run.publish(ae, "MagNet baseline (auto-encoder + detector thresholds)", folder=root / "magnet",
                metrics=measure(run, magnet, clf, folder), train_config=tc, summary=(
                    "MagNet (Meng & Chen 2017), CIFAR-10 set-up: auto-encoder reformer plus a reconstruction-error "
                    "detector and two JSD detectors (T = 10, 40) with thresholds for a 0.5% clean drop rate each, "
                    f"calibrated against the classifier in `{folder.name}`."))

    pool = build_pool(run, clf, run.train, "train", folder=folder)
    ddsa = DDSA(DDSAConfig(channels=c.in_channels)).to(run.device).to(memory_format=torch.channels_last)

    def ddsa_input(x, xa):
        noisy = (x + ddsa.config.noise * torch.randn_like(x)).clamp(0, 1)
        return torch.cat([x, noisy, xa])
    _fit(run, ddsa, tc, tc.ddsa_epochs, "ddsa", ddsa_input, pool=pool)
    run.publish(ddsa, "DDSA baseline (deep denoising sparse auto-encoder)", folder=root / "ddsa",
                metrics=measure(run, Purified(ddsa.eval(), clf), clf, folder), train_config=tc, summary=(
                    "DDSA (Bakhti et al. 2019): denoising sparse auto-encoder trained on clean, noisy and gray-box "
                    f"adversarial images (against the classifier in `{folder.name}`) to output the clean image."))


def _reconstruct(model, x):
    return model(x), None


def _fit(run: Run, model, tc: BaselineTrainConfig, epochs: float, stage: str, make_input, pool=None) -> None:
    """MSE(model(input), clean) (+ DDSA's sparsity) over ``epochs``; input = make_input(x, x')."""
    run.ckpt = run.ckpt.with_name(f"baselines-{stage}.pt")
    opt, sched, steps_per_epoch, total, start = run.one_cycle(
        model, tc.lr, run.epochs(epochs), tc.batch_size, state=run.load_ckpt())
    if pool is None:
        epoch_iter = lambda seed: ((x, None, y, None) for x, y in run.batches(run.train, True, tc.batch_size, seed))  # noqa: E731
    else:
        epoch_iter = lambda seed: pairs(run, run.train, pool, True, tc.batch_size, seed=seed)  # noqa: E731
    net = run.parallel(model, encode_decode if isinstance(model, DDSA) else _reconstruct)
    for step, epoch, (x, xa, _, _), epoch_end, bar in run.loop(epoch_iter, steps_per_epoch, total, start, stage):
        inp = make_input(x, xa)
        tgt = x.repeat(len(inp) // len(x), 1, 1, 1)
        model.train()
        with run.autocast():
            out, code = net(inp)
            loss = F.mse_loss(out.float(), tgt)
            if isinstance(model, DDSA):
                loss = loss + model.config.sparsity_weight * model.sparsity(code)
        run.update(loss, opt, sched, model, step, epoch, epoch_end, bar, stage=stage)
    model.eval()


@torch.no_grad()
def calibrate_magnet(run: Run, magnet: MagNet) -> None:
    """Each detector's threshold: the (1 - drop_rate) quantile of its score on clean validation images."""
    s = torch.cat([magnet.scores(x).cpu() for x, _ in run.batches(run.val, False, 500)])
    q = torch.quantile(s, 1 - magnet.ae.config.drop_rate, dim=0)
    magnet.ae.config.recon_threshold = float(q[0])
    magnet.ae.config.jsd_thresholds = [float(v) for v in q[1:]]
    run.log(stage="magnet", thresholds=[round(float(v), 6) for v in q])


@torch.no_grad()
def measure(run: Run, defense, clf, folder) -> dict:
    sub = run.measure_set(2000)
    pool = build_pool(run, clf, sub, "test-sample", folder=folder)
    ok = {"clean": 0, "attacked": 0, "rejected_clean": 0, "rejected_attacked": 0}
    for x, xa, y, _ in pairs(run, sub, pool, False, 500):
        ok["clean"] += (defense(x).argmax(1) == y).sum().item()
        ok["attacked"] += (defense(xa).argmax(1) == y).sum().item()
        if isinstance(defense, MagNet):
            ok["rejected_clean"] += defense.rejected(x).sum().item()
            ok["rejected_attacked"] += defense.rejected(xa).sum().item()
    n = len(sub)
    m = {f"classifier accuracy on purified clean test images ({n})": round(ok["clean"] / n, 4),
         f"classifier accuracy on purified attacked test images ({n}, gray-box pool)": round(ok["attacked"] / n, 4)}
    if isinstance(defense, MagNet):
        m["rejection rate, clean"] = round(ok["rejected_clean"] / n, 4)
        m["rejection rate, attacked"] = round(ok["rejected_attacked"] / n, 4)
    m["classifier accuracy, clean, no defense"] = round(accuracy(clf, run, sub), 4)
    run.log(stage="measure", **{k[:40]: v for k, v in m.items()})
    return m
