"""Train the GAN: generator (started from the ISM decoder) and discriminator.

Recipe:
- Generator initialised from the trained ISM decoder, so G(ISM code) already reproduces the
  purified image and regeneration can start from the ISM code. Its latent prior
  N(z_mean, z_std) is fitted to ISM codes of clean training images; random restarts draw from it.
- Discriminator: real = clean images; fake = generated images, adversarial examples from the
  gray-box pool (paper Sec. III: "trained on a mix of clean and adversarial examples") and
  adversarial *generated* samples made with paper Eq. 2:
      x_adv = G(z) + (eps - phi * u) * sign(grad_x CE(classifier(G(z)), its own label)),
  u ~ U(0, 1), phi the noise factor.
- Generator loss = adv_weight * non-saturating GAN loss + MSE(G(E(x)), x) + MSE(G(E(x')), x):
  the reconstruction terms keep G a good decoder of ISM codes while the GAN term sharpens it.
- Adam(0.5, 0.999) as in DCGAN; bf16 autocast.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ism.data.subsets import evenly_spaced
from ism.eval.metrics import auroc, psnr
from ism.hub import WEIGHTS_NAME, sha256
from ism.models.gan import Discriminator, DiscriminatorConfig, Generator

from .advpool import build_pool, load_classifier
from .common import Run
from .detector import load_ism
from .ism_net import pairs


@dataclass
class GANTrainConfig:
    epochs: float = 2
    batch_size: int = 128
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    adv_weight: float = 0.005
    eq2_eps: float = 0.1      # Eq. 2 epsilon for adversarial generated samples
    eq2_phi: float = 0.5      # Eq. 2 noise factor
    start_from: str = ""      # a defense folder whose ISM has a detail path (the hardened CIFAR-10 one): the generator
                              # starts as that ISM's encoder + that defense's generator, carried as its own encoder,
                              # for a defense whose ISM keeps Table 2's 128-d code (issue "the pictures tell the
                              # truth": that code caps a redrawn picture near 19 dB); epochs = 0 takes it as it is


GAN_RECIPES = {"cpu": GANTrainConfig(epochs=1)}   # --recipe cpu (train/common.py: CPU_RECIPE)


def eq2_adversarial(gen_images, clf, eps, phi, run: Run):
    x = gen_images.detach().requires_grad_(True)
    with run.autocast():
        logits = clf(x).float()
    loss = F.cross_entropy(logits, logits.argmax(1))
    (g,) = torch.autograd.grad(loss, x)
    step = eps * (1 - phi * torch.rand(len(x), 1, 1, 1, device=x.device))
    return (x + step * g.sign()).clamp(0, 1).detach()


def start_generator(run: Run, ism, source: str) -> Generator:
    """The generator regeneration uses: the ISM's decoder (its code is the starting latent), or with ``source``
    another defense's detail-path ISM encoder and generator, carried by the generator as its own encoder."""
    if not source:
        G = Generator(ism.generator_config())
        G.load_state_dict(ism.decoder.state_dict())
        return G.to(run.device)
    from ism.models.ism_net import ISMNetwork

    # another defense's weights: not this defense's lineage (its card names them and their sha256 instead)
    src_ism = ISMNetwork.from_pretrained(str(Path(source) / "ism"))
    src_gen = Generator.from_pretrained(str(Path(source) / "generator"))
    if src_gen.encoder is not None or not src_gen.config.detail_channels:
        raise ValueError(f"{source}: start_from needs a detail-path generator that starts from its ISM's code")
    G = Generator(replace(src_gen.config, enc_widths=list(src_ism.config.enc_widths)))
    G.load_state_dict({**src_gen.state_dict(), **{f"encoder.{k}": v for k, v in src_ism.encoder.state_dict().items()}})
    return G.to(run.device)


@torch.no_grad()
def fit_prior(run: Run, gen: Generator, encode, n: int = 10000) -> None:
    codes = []
    for x, _ in run.batches(run.train.subset(evenly_spaced(len(run.train), n)), False, 500):
        with run.autocast():
            codes.append(encode(x).float())
    codes = torch.cat(codes)
    gen.z_mean.copy_(codes.mean(0)); gen.z_std.copy_(codes.std(0).clamp_min(1e-3))


def train_gan(run: Run, tc: GANTrainConfig | None = None) -> Generator:
    tc = run.configure(tc or replace(GAN_RECIPES.get(run.recipe, GANTrainConfig())))
    clf = load_classifier(run)
    ism = load_ism(run)
    pool = build_pool(run, clf, run.train, "train")
    G = start_generator(run, ism, tc.start_from)
    encode = G.encode if G.encoder is not None else ism.encode
    if not tc.start_from:
        fit_prior(run, G, encode)   # a started generator keeps the prior fitted to its own encoder's codes
    D = Discriminator(DiscriminatorConfig(image_size=ism.config.image_size, channels=ism.config.channels)).to(run.device)
    opt_g = torch.optim.Adam(G.parameters(), lr=tc.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=tc.lr_d, betas=(0.5, 0.999))
    steps_per_epoch = -(-len(run.train) // tc.batch_size)
    total = int(run.epochs(tc.epochs) * steps_per_epoch) if tc.start_from else max(1, int(run.epochs(tc.epochs) * steps_per_epoch))
    start, state = 0, run.load_ckpt()
    if state:
        G.load_state_dict(state["G"]); D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"]); start = state["step"]
    bce = F.binary_cross_entropy_with_logits
    batches = run.loop(lambda seed: pairs(run, run.train, pool, True, tc.batch_size, seed=seed),
                       steps_per_epoch, total, start)
    G_net, D_net = run.parallel(G), run.parallel(D)
    for step, epoch, (x, xa, _, _), epoch_end, bar in batches:
        n = len(x)
        G.train(); D.train()
        z = G.sample_latent(n)
        with run.autocast():
            fake = G_net(z).float()
        fake_adv = eq2_adversarial(fake, clf, tc.eq2_eps, tc.eq2_phi, run)
        # discriminator: clean real vs generated, adversarial and Eq. 2 samples
        with run.autocast():
            d_all = D_net(torch.cat([x, fake.detach(), xa, fake_adv])).float()   # D has no batch norm
            d_real, d_fake = d_all[:n], d_all[n:]
            loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        opt_d.zero_grad(set_to_none=True); loss_d.backward(); opt_d.step()
        # generator
        with torch.no_grad(), run.autocast():
            codes = encode(torch.cat([x, xa])).float()
        D.requires_grad_(False)   # the generator step updates G only (and leaves D's replicas alone)
        with run.autocast():
            d_gen = D(fake).float()
            rec = G_net(codes).float()
            loss_g = (tc.adv_weight * bce(d_gen, torch.ones_like(d_gen)) + F.mse_loss(rec, torch.cat([x, x])))
        opt_g.zero_grad(set_to_none=True); loss_g.backward(); opt_g.step()
        D.requires_grad_(True)
        if step % 50 == 0:
            bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.4f}")
        if epoch_end:
            run.log(epoch=epoch, step=step + 1, loss_d=round(loss_d.item(), 4), loss_g=round(loss_g.item(), 5))
            run.save_ckpt(G=G.state_dict(), D=D.state_dict(), opt_g=opt_g.state_dict(),
                          opt_d=opt_d.state_dict(), step=step + 1)
    G.eval(); D.eval()
    trained = total > 0            # a started generator taken as it is (epochs 0): no discriminator to speak of
    metrics = measure_gan(run, G, D if trained else None, encode, clf)
    start = (f"started as {tc.start_from}'s detail-path ISM encoder (carried as its own encoder: regeneration starts "
             f"from its code) and generator (sha256 {sha256(Path(tc.start_from) / 'ism' / WEIGHTS_NAME)[:12]} and "
             f"{sha256(Path(tc.start_from) / 'generator' / WEIGHTS_NAME)[:12]})" if tc.start_from else
             "initialised from the ISM decoder, latent prior fitted to ISM codes")
    summary = f"Generator: z ({G.config.z_dim}) -> image in [0, 1], {start}; used by regeneration."
    if trained:
        summary += (" Discriminator: image -> logit of 'clean real image', trained against generated, adversarial and "
                    "Eq. 2 samples. Both written by the same command.")
    for name, model, title in (("generator", G, "GAN generator"), ("discriminator", D, "GAN discriminator"))[:1 + trained]:
        run.publish(model, title, summary, metrics, tc, folder=run.out.parent / name)
    return G


@torch.no_grad()
def measure_gan(run: Run, G, D, encode, clf) -> dict:
    sub = run.measure_set(2000)
    pool = build_pool(run, clf, sub, "test-sample")
    d_clean, d_adv, ps, acc = [], [], 0.0, 0
    for x, xa, y, _ in pairs(run, sub, pool, False, 500):
        with run.autocast():
            if D is not None:
                d_clean.append(D(x).float().cpu()); d_adv.append(D(xa).float().cpu())
            rec = G(encode(x)).float()
            acc += (clf(rec).argmax(1) == y).sum().item()
        ps += psnr(rec, x).sum().item()
    m = {} if D is None else {f"discriminator AUROC clean vs attacked (pool mix) [{len(sub)} test]": round(
            auroc(-torch.cat(d_clean), -torch.cat(d_adv)), 4)}
    m.update({"PSNR G(ISM code) vs clean x (dB)": round(ps / len(sub), 2),
              "classifier accuracy on G(ISM code), clean": round(acc / len(sub), 4)})
    run.log(**{k.split(" [")[0]: v for k, v in m.items()})
    return m
