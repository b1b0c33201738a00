"""Train the ISM network: paper Eq. 3, x' -> x, on clean and attacked images.

Recipe:
- Each batch pairs B clean images with their attacked copies from the gray-box pool (FGSM and
  PGD-10 against the shipped classifier, eps 2/255 .. 0.4); both map to the clean image.
- Loss = MSE(ISM(x'), x)                          (Eq. 3, squared)
       + cls_weight * CE(classifier(ISM(x')), y)  (guided by the frozen classifier, as in HGD,
                                                   Liao et al. 2018: a blurry reconstruction that
                                                   keeps the class beats a sharper one that loses it)
       + code_l1 * |code|_1                       (instance sparsity of the 128-d code)
- AdamW + one-cycle, random flips (same flip for the pair), bf16 autocast.
- Paper recipe on CIFAR-10 (``ISM_RECIPES["paper"]``), a second stage: Table 2's auto-encoder is frozen and a
  refiner (``refine_width``, ism/models/ism_net.py) learns to undo attacks with HGD's classifier-guided loss
      MSE(ISM(x'), x) + guide_weight * mean |f(ISM(x')) - f(x)|  (f: the classifier's logits)
  on batches of ``refine_batch`` attacked images from a pool of FGSM, PGD-10, MI-FGSM-10 and CW-30 at
  2..16/255 (``UNDO_ATTACKS``) plus ``refine_clean`` clean ones (which must pass unchanged). ``init`` starts
  from a trained ISM's auto-encoder instead of training stage 1.
- CIFAR-10 (``ISM_RECIPES``): the ISM has a detail path (``detail_channels``, ism/models/ism_net.py), so
  the purified image keeps the spatial detail the 128-d code cannot hold (the plain Table 2
  auto-encoder capped CIFAR-10 at 17.9 dB PSNR and cost the classifier 15 points on clean images).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ism.data.subsets import spread
from ism.eval.metrics import psnr
from ism.models.ism_net import ISMConfig, ISMNetwork

from .advpool import ATTACKS, LEVELS, UNDO_ATTACKS, UNDO_LEVELS, build_pool, load_classifier
from .common import SMOKE_REFINE_EPOCHS, Run


@dataclass
class ISMTrainConfig:
    epochs: float = 6
    batch_size: int = 128   # clean images per batch; the batch holds as many attacked copies
    lr: float = 2e-3
    cls_weight: float = 0.02
    code_l1: float = 1e-4
    detail_channels: int = 0    # ISMConfig.detail_channels: 0 = Table 2's auto-encoder
    enc_widths: tuple = ()      # ISMConfig.enc_widths / dec_widths; () = Table 2's. A narrower auto-encoder with a
    dec_widths: tuple = ()      # detail path is the CelebA paper recipe's face generator (docs/training.md)
    refine_width: int = 0       # ISMConfig.refine_width: > 0 adds the refiner stage (see above)
    refine_epochs: float = 15   # passes over the training set's attacked copies (``--epochs`` sets stage 1's)
    refine_batch: int = 96      # attacked images per refiner batch ...
    refine_clean: int = 32      # ... plus this many clean ones
    refine_lr: float = 2e-3
    guide_weight: float = 1.0   # HGD's logit distance next to Eq. 3's MSE
    refine_bound: float = 0.0   # ISMConfig.refine_bound: > 0 bounds the refiner's change per pixel (b * tanh(r / b))
    clean_mse: float = 0.0      # an extra MSE on the clean images of each refiner batch, so they pass unchanged
    refine_images: int = 0      # > 0: the refiner's pool holds this many training images (drawn at random), not all
    undo_attacks: tuple = UNDO_ATTACKS                       # the refiner's pool: each image attacked once, by one
    undo_levels_255: tuple = tuple(round(e * 255) for e in UNDO_LEVELS)   # of these, at one of these eps (/255)
    keep_refiner: bool = False  # with ``init``: fine-tune that ISM's refiner instead of starting a new one
    measure: int = 2000         # test images the model card's figures are measured on
    init: str = ""              # an ISM folder whose auto-encoder the refiner starts from (skips stage 1)
    classifier: str = ""        # the classifier (a folder in the defense) the ISM learns with and its pool
                                # attacks; "" = the raw-image classifier (base_classifier_folder). The hardened
                                # defense's refiner: "classifier" (trained by `robust` on purified images)


# What `python -m train ism --dataset D` runs (figures reached: weights/D/ablation/ism/README.md).
# CIFAR-10: PSNR 28.8 dB on clean test images (Table 2 alone: 17.9), read by the classifier at 0.770
# vs 0.753 on the raw images; 21.0 dB on attacked ones (0.582 read correctly vs 0.224 unpurified).
# CelebA keeps Table 2's ISM (the default config): with detail_channels=16 its hardened defense kept the
# purified faces at 23.4 dB (17.4) at the same PGD-10 8/255 (0.672 vs 0.673), but clean 0.946 < the 0.95
# CelebA must keep (results/celeba-detail-ism.md)
ISM_RECIPES = {
    "cifar10": ISMTrainConfig(epochs=8, detail_channels=16),
}
# --recipe cpu (train/common.py: CPU_RECIPE), on the AVX2 EPYC: 49 min with its gray-box pool (22 min), PSNR
# 25.9 dB on clean test images, read by its classifier at 0.657 vs 0.671 raw; 20.1 dB / 0.343 attacked
ISM_RECIPES["cpu"] = replace(ISM_RECIPES["cifar10"], epochs=2)


# Paper recipe, CIFAR-10: Table 2's auto-encoder, then the refiner (issue "caught and undone"; the probes that
# chose it: results/caught-and-undone-probes.md). CelebA's paper recipe keeps Table 2's ISM alone.
ISM_RECIPES["paper"] = ISMTrainConfig(refine_width=32, refine_epochs=24)


# `python -m train refine` (not in `all`): the refiner after a hardened ISM's auto-encoder and detail path, guided by
# the classifier `robust` trained on purified images (and attacked against it). Tried on weights/cifar10, not shipped:
# 12 epochs (52 min on two CPU cores) restored 0.658 of the images gray-box PGD-10 fools (0.126), but adaptive PGD-10
# through the pipeline fell from 0.55 to 0.0 on validation (results/caught-and-undone.md)
HARDENED_REFINER = ISMTrainConfig(refine_width=32, refine_epochs=12, classifier="classifier")


def train_hardened_refiner(run: Run, tc: ISMTrainConfig | None = None) -> ISMNetwork:
    """``python -m train refine``: the refiner stage on the defense's trained ISM (``init`` = its ism/ folder);
    its checkpoint is its own (ism-refine.pt), so it never resumes stage 1's."""
    run.ckpt = run.ckpt.with_name("ism-refine.pt")
    return train_ism(run, run.configure(tc or replace(HARDENED_REFINER, init=str(run.out))))


def ism_recipe(recipe: str, dataset: str = "cifar10") -> ISMTrainConfig:
    if recipe == "paper" and dataset != "cifar10":
        return ISMTrainConfig()
    return replace(ISM_RECIPES.get(recipe, ISMTrainConfig()))


def pairs(run: Run, split, pool, shuffle: bool, batch_size: int, seed: int = 0):
    n = len(split)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        j = run.shard(idx[i:i + batch_size]) if shuffle else idx[i:i + batch_size]
        yield (run.to(split.float(j)), run.to(pool.adv[j].float()), split.labels[j].to(run.device), j)


def encode_decode(model, x):
    """(reconstruction, code): the training forward of an auto-encoder with a code penalty."""
    code = model.encode(x) if hasattr(model, "encode") else model.encoder(x)
    return model.decoder(code), code


def train_ism(run: Run, tc: ISMTrainConfig | None = None) -> ISMNetwork:
    tc = run.configure(tc or ism_recipe(run.recipe, run.cfg.dataset))
    clf, clf_folder = load_classifier(run, tc.classifier), None
    if tc.classifier:
        clf_folder = run.out.parent / tc.classifier
    config = ISMConfig(image_size=clf.config.image_size, channels=clf.config.in_channels,
                       detail_channels=tc.detail_channels)
    config = replace(config, **{k: list(getattr(tc, k)) for k in ("enc_widths", "dec_widths") if getattr(tc, k)})
    state = run.load_ckpt()
    resumed = state if state and state.get("stage") == "refine" else None   # a refiner checkpoint: the whole ISM
    if tc.init:                                # stage 1 done elsewhere: that ISM's auto-encoder (its refiner dropped
        base = ISMNetwork.from_pretrained(tc.init)   # unless ``keep_refiner``)
        keep = tc.keep_refiner and base.refiner is not None
        model = ISMNetwork(base.config if keep else replace(base.config, refine_width=0))
        model.load_state_dict({k: v for k, v in base.state_dict().items() if keep or not k.startswith("refiner.")})
    elif resumed:
        model = ISMNetwork(config)             # (train_refiner loads the checkpoint's weights)
    else:
        model = train_autoencoder(run, tc, clf, config, state, clf_folder)
    if tc.refine_width:
        model = train_refiner(run, tc, clf, model, resumed, clf_folder)
    model.eval()
    metrics = measure_ism(run, model, clf, clf_folder, tc.measure)
    refiner = (f", and a refiner (a residual U-Net of width {tc.refine_width}) trained with HGD's classifier-guided "
               "loss to take attacks out and leave clean images alone" if tc.refine_width else "")
    run.publish(model, "ISM network", metrics=metrics, train_config=tc, summary=(
        "Instance sparsity mapping network: paper Table 2 encoder (128-d code) + a decoder shaped like the "
        "GAN generator" + (f", plus a detail path ({tc.detail_channels} maps at 1/4 resolution, ism/models/ism_net.py)"
                           if tc.detail_channels else "") +
        ", trained with Eq. 3 to map attacked images back to clean ones" + refiner + ". Input and output: "
        "(N, 3, H, W) floats in [0, 1]."),
        data=f"; attacked copies: FGSM / PGD-10 against the shipped classifier, eps in {[round(v, 4) for v in LEVELS]}"
             + (f"; refiner: {' / '.join(tc.undo_attacks)} at eps {list(tc.undo_levels_255)}/255"
                if tc.refine_width else ""))
    return model


def train_autoencoder(run: Run, tc: ISMTrainConfig, clf, config: ISMConfig, state, clf_folder=None) -> ISMNetwork:
    """Stage 1: Table 2's auto-encoder (and detail path) by Eq. 3, guided by the classifier's CE."""
    pool = build_pool(run, clf, run.train, "train", folder=clf_folder)
    model = ISMNetwork(config).to(run.device).to(memory_format=torch.channels_last)
    opt, sched, steps_per_epoch, total, start = run.one_cycle(
        model, tc.lr, run.epochs(tc.epochs), tc.batch_size, state=state)
    batches = run.loop(lambda seed: pairs(run, run.train, pool, True, tc.batch_size, seed=seed),
                       steps_per_epoch, total, start)
    net = run.parallel(model, encode_decode)
    for step, epoch, (x, xa, y, _), epoch_end, bar in batches:
        flip = (torch.rand(len(x), device=x.device) < 0.5).view(-1, 1, 1, 1)
        x, xa = torch.where(flip, x.flip(3), x), torch.where(flip, xa.flip(3), xa)
        inp, tgt, yy = torch.cat([x, xa]), torch.cat([x, x]), torch.cat([y, y])
        model.train()
        with run.autocast():
            out, code = net(inp)
            out = out.float()
            code_dim = model.config.latent_dim      # the sparsity penalty is on the 128-d instance code
            loss = F.mse_loss(out, tgt) + tc.code_l1 * code[:, :code_dim].float().abs().mean()
            if tc.cls_weight:
                loss = loss + tc.cls_weight * F.cross_entropy(clf(out).float(), yy)
        run.update(loss, opt, sched, model, step, epoch, epoch_end, bar)
    return model.eval()


def train_refiner(run: Run, tc: ISMTrainConfig, clf, base: ISMNetwork, state, clf_folder=None) -> ISMNetwork:
    """Stage 2: freeze the auto-encoder, train the refiner to undo gray-box attacks (HGD loss) on the
    classifier ``clf`` (weights in ``clf_folder``; None: the raw-image classifier)."""
    split = run.train.subset(spread(len(run.train), tc.refine_images or None, run.cfg.seed))
    pool = build_pool(run, clf, split, "train", folder=clf_folder, attacks=tuple(tc.undo_attacks),
                      levels=tuple(e / 255 for e in tc.undo_levels_255))
    model = ISMNetwork(replace(base.config, refine_width=tc.refine_width, refine_bound=tc.refine_bound))
    missing = model.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert all(k.startswith("refiner.") for k in missing), missing
    if state:                                   # resumed: the checkpoint holds the whole ISM
        model.load_state_dict(state["model"])
    model = model.to(run.device).to(memory_format=torch.channels_last)
    for part in (model.encoder, model.decoder):
        part.requires_grad_(False)
    model.eval()                                # the frozen auto-encoder's batch norms keep their statistics
    epochs = min(tc.refine_epochs, SMOKE_REFINE_EPOCHS) if run.cfg.limit else tc.refine_epochs
    opt, sched, steps_per_epoch, total, start = run.one_cycle(
        model.refiner, tc.refine_lr, epochs, tc.refine_batch, pct_start=0.1, n=len(split),
        state=state and {**state, "model": model.refiner.state_dict()})   # (the refiner: loaded just above)
    probe = restore_probe(run, clf)
    batches = run.loop(lambda seed: pairs(run, split, pool, True, tc.refine_batch, seed=seed),
                       steps_per_epoch, total, start, desc="refine")
    net = run.parallel(model)
    nc = tc.refine_clean
    for step, epoch, (x, xa, y, _), epoch_end, bar in batches:
        flip = (torch.rand(len(x), device=x.device) < 0.5).view(-1, 1, 1, 1)
        x, xa = torch.where(flip, x.flip(3), x), torch.where(flip, xa.flip(3), xa)
        inp, tgt = torch.cat([xa, x[:nc]]), torch.cat([x, x[:nc]])
        model.refiner.train()
        with run.autocast():
            with torch.no_grad():
                target_logits = clf(tgt).float()
            out = net(inp).float()
            loss = F.mse_loss(out, tgt) + tc.guide_weight * (clf(out).float() - target_logits).abs().mean()
            if tc.clean_mse and nc:
                loss = loss + tc.clean_mse * F.mse_loss(out[-nc:], tgt[-nc:])
        run.optimise(loss, opt, sched)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if epoch_end:
            model.eval()
            run.log(epoch=epoch, step=step + 1, loss=round(loss.item(), 5), **probe(model))
            run.save_ckpt(stage="refine", model=model.state_dict(),
                          opt=opt.state_dict(), sched=sched.state_dict(), step=step + 1)
    return model.eval()


def restore_probe(run: Run, clf, n: int = 500, eps: float = 8 / 255):
    """A progress figure for the log: of ``n`` test images a gray-box PGD-10 at ``eps`` fools, the share
    the classifier reads right again on ISM(x') ("restored"), and what the eye sees (ism/eval/pictures.py:
    PSNR of the attacked and purified pictures, the share moved closer, the largest change, the clean pass)."""
    from ism.attacks.standard import make_attack
    from ism.eval.pictures import picture_figures

    sub = run.measure_set(n)
    x, y = run.to(sub.float(torch.arange(len(sub)))), sub.labels.to(run.device)
    digest = hashlib.sha1(b"".join(t.detach().cpu().float().numpy().tobytes() for t in clf.state_dict().values()))
    cache = Path(run.cfg.ckpt_dir) / "probe" / f"{run.cfg.dataset}-{n}-{run.cfg.seed}-{round(eps * 255)}-{digest.hexdigest()[:10]}.pt"
    if cache.is_file():                     # the attacked copies depend only on the classifier, images and seed
        xa = torch.load(cache).to(run.device)
    else:
        with torch.random.fork_rng(devices=[] if run.device.type == "cpu" else [run.device]):   # its own seed, leaving training's random numbers as they were
            torch.manual_seed(run.cfg.seed + 1)
            atk = make_attack("pgd", clf, eps, steps=10)
            with torch.enable_grad(), run.autocast():
                xa = torch.cat([atk(x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)])
        if run.main:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(xa.cpu(), cache.with_suffix(".tmp"))
            cache.with_suffix(".tmp").replace(cache)
    with torch.no_grad(), run.autocast():
        fooled = (clf(x).argmax(1) == y) & (clf(xa).argmax(1) != y)

    @torch.no_grad()
    def measure(model) -> dict:
        with run.autocast():
            ra, rc = model(xa).float(), model(x).float()
            pa, pc = clf(ra).argmax(1), clf(rc).argmax(1)
        eye = picture_figures(x, y, xa, ra, fooled, pa, rc, pc)
        return {"restored": eye["restored"], "acc_ism_adv": round((pa == y).float().mean().item(), 3),
                "acc_ism_clean": round((pc == y).float().mean().item(), 3),
                **{k: v for k, v in eye.items() if k not in ("restored", "clean_accuracy")}}
    return measure


@torch.no_grad()
def measure_ism(run: Run, model: ISMNetwork, clf, clf_folder=None, n: int = 2000) -> dict:
    """PSNR and classifier accuracy on ISM outputs, on a held-out attacked pool of the test set (attacks
    against ``clf``, whose weights are in ``clf_folder``; None: the raw-image classifier)."""
    sub = run.measure_set(n)
    pool = build_pool(run, clf, sub, "test-sample", folder=clf_folder)
    s = {k: 0.0 for k in ("psnr_clean", "psnr_adv", "acc_clean", "acc_ism_clean", "acc_adv", "acc_ism_adv")}
    for x, xa, y, _ in pairs(run, sub, pool, False, 500):
        with run.autocast():
            rc, ra = model(x).float(), model(xa).float()
            s["acc_clean"] += (clf(x).argmax(1) == y).sum().item()
            s["acc_adv"] += (clf(xa).argmax(1) == y).sum().item()
            s["acc_ism_clean"] += (clf(rc).argmax(1) == y).sum().item()
            s["acc_ism_adv"] += (clf(ra).argmax(1) == y).sum().item()
        s["psnr_clean"] += psnr(rc, x).sum().item()
        s["psnr_adv"] += psnr(ra, x).sum().item()
    n = len(sub)
    s = {k: round(v / n, 4 if "acc" in k else 2) for k, v in s.items()}
    names = {"psnr_clean": "PSNR ISM(x) vs x, clean (dB)", "psnr_adv": "PSNR ISM(x') vs x, attacked (dB)",
             "acc_clean": "classifier accuracy, clean", "acc_ism_clean": "classifier accuracy on ISM(x), clean",
             "acc_adv": "classifier accuracy, attacked (no defense)",
             "acc_ism_adv": "classifier accuracy on ISM(x'), attacked"}
    out = {f"{names[k]} [{n} test images, pool mix of {'/'.join(ATTACKS)} over eps levels]": v for k, v in s.items()}
    run.log(**s)
    if model.refiner is not None:
        r = restore_probe(run, clf, n)(model)
        run.log(**r)
        out.update({f"{k} [{n} test images, gray-box PGD-10 8/255]": v for k, v in (
            ("fooled images the classifier reads right on ISM(x')", r["restored"]),
            ("classifier accuracy on ISM(x'), attacked", r["acc_ism_adv"]),
            ("PSNR to the original of the fooled images, attacked (dB)", r["psnr_attacked"]),
            ("PSNR to the original of the fooled images, purified (dB)", r["psnr_purified"]),
            ("share of fooled images the ISM moves closer to the original", r["closer"]),
            ("largest change the ISM makes to an attacked image (/255)", r["largest_change_255"]))})
    return out
