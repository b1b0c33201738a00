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

import torch
import torch.nn.functional as F

from ism.data.subsets import evenly_spaced
from ism.eval.metrics import auroc, psnr
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


GAN_RECIPES = {"cpu": GANTrainConfig(epochs=1)}   # --recipe cpu (train/common.py: CPU_RECIPE)


def eq2_adversarial(gen_images, clf, eps, phi, run: Run):
    x = gen_images.detach().requires_grad_(True)
    with run.autocast():
        logits = clf(x).float()
    loss = F.cross_entropy(logits, logits.argmax(1))
    (g,) = torch.autograd.grad(loss, x)
    step = eps * (1 - phi * torch.rand(len(x), 1, 1, 1, device=x.device))
    return (x + step * g.sign()).clamp(0, 1).detach()


@torch.no_grad()
def fit_prior(run: Run, gen: Generator, ism, n: int = 10000) -> None:
    codes = []
    for x, _ in run.batches(run.train.subset(evenly_spaced(len(run.train), n)), False, 500):
        with run.autocast():
            codes.append(ism.encode(x).float())
    codes = torch.cat(codes)
    gen.z_mean.copy_(codes.mean(0)); gen.z_std.copy_(codes.std(0).clamp_min(1e-3))


def train_gan(run: Run, tc: GANTrainConfig | None = None) -> Generator:
    tc = run.configure(tc or replace(GAN_RECIPES.get(run.recipe, GANTrainConfig())))
    clf = load_classifier(run)
    ism = load_ism(run)
    pool = build_pool(run, clf, run.train, "train")
    G = Generator(ism.generator_config()).to(run.device)
    G.load_state_dict(ism.decoder.state_dict())
    fit_prior(run, G, ism)
    D = Discriminator(DiscriminatorConfig(image_size=ism.config.image_size, channels=ism.config.channels)).to(run.device)
    opt_g = torch.optim.Adam(G.parameters(), lr=tc.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=tc.lr_d, betas=(0.5, 0.999))
    steps_per_epoch = -(-len(run.train) // tc.batch_size)
    total = max(1, int(run.epochs(tc.epochs) * steps_per_epoch))
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
            codes = ism.encode(torch.cat([x, xa])).float()
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
    metrics = measure_gan(run, G, D, ism, clf)
    summary = (f"Generator: z ({G.config.z_dim}) -> image in [0, 1], initialised from the ISM decoder, latent prior fitted to "
               "ISM codes; used by regeneration. Discriminator: image -> logit of 'clean real image', trained "
               "against generated, adversarial and Eq. 2 samples. Both written by the same command.")
    for name, model, title in (("generator", G, "GAN generator"), ("discriminator", D, "GAN discriminator")):
        run.publish(model, title, summary, metrics, tc, folder=run.out.parent / name)
    return G


@torch.no_grad()
def measure_gan(run: Run, G, D, ism, clf) -> dict:
    sub = run.measure_set(2000)
    pool = build_pool(run, clf, sub, "test-sample")
    d_clean, d_adv, ps, acc = [], [], 0.0, 0
    for x, xa, y, _ in pairs(run, sub, pool, False, 500):
        with run.autocast():
            d_clean.append(D(x).float().cpu()); d_adv.append(D(xa).float().cpu())
            rec = G(ism.encode(x)).float()
            acc += (clf(rec).argmax(1) == y).sum().item()
        ps += psnr(rec, x).sum().item()
    m = {f"discriminator AUROC clean vs attacked (pool mix) [{len(sub)} test]": round(
            auroc(-torch.cat(d_clean), -torch.cat(d_adv)), 4),
         "PSNR G(ISM code) vs clean x (dB)": round(ps / len(sub), 2),
         "classifier accuracy on G(ISM code), clean": round(acc / len(sub), 4)}
    run.log(**{k.split(" [")[0]: v for k, v in m.items()})
    return m
