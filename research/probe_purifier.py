"""Probe: can a purifier trained with a classifier-guided loss undo gray-box attacks? (issue: caught and undone)

    python -m research.probe_purifier --clf weights/cifar10-paper/classifier --unet 32 --out .cache/probe/paper-unet \
        --epochs 8 --lr 2e-3

A quick, self-contained experiment, not a shipped stage: it crafts a gray-box pool once (``--pool-n`` CIFAR-10
training images, each attacked by one of FGSM, PGD-10, MI-FGSM-10 or CW-30 at epsilon 2..16/255 against
``--clf``), then trains a purifier (a shipped ISM to start from, ``--init``, or a full-resolution residual
U-Net, ``--unet WIDTH``) with MSE(D(x'), x) + |f(D(x')) - f(x)|_1 on the logits (HGD, Liao et al. 2018) on
attacked and clean images, bf16 autocast. Every epoch it measures, on 500 class-spread test images attacked
by gray-box PGD-10 at 8/255: "restored" (of the images the attack fools, the share the classifier reads right
on D(x')), accuracy on D(x') and D(x), and PSNR. Figures: results/caught-and-undone-probes.md.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchattacks

from ism.attacks.standard import make_attack
from ism.data.datasets import load_split
from ism.models.classifier import Classifier
from ism.models.ism_net import ISMConfig, ISMNetwork

p = argparse.ArgumentParser()
p.add_argument("--clf", default="weights/cifar10/classifier")
p.add_argument("--init", default="weights/cifar10/ism")
p.add_argument("--data", default="../shared/data/cifar10")
p.add_argument("--cache", default=".cache/probe")
p.add_argument("--detail", type=int, default=-1)   # scratch: detail channels
p.add_argument("--unet", type=int, default=0)      # >0: a full-resolution residual U-Net of this width instead
p.add_argument("--out", required=True)
p.add_argument("--pool-n", type=int, default=20000)
p.add_argument("--epochs", type=float, default=3)
p.add_argument("--bs", type=int, default=128)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--w-pix", type=float, default=1.0)
p.add_argument("--w-guide", type=float, default=1.0)
p.add_argument("--w-ce", type=float, default=0.0)
p.add_argument("--clean-frac", type=float, default=0.25)
p.add_argument("--eval-n", type=int, default=500)
p.add_argument("--pool-only", action="store_true")
a = p.parse_args()
torch.manual_seed(0)
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
log = open(out / "log.txt", "a")
def say(**kv):
    s = json.dumps({"t": round(time.time() - T0), **kv}); print(s, flush=True); log.write(s + "\n"); log.flush()
T0 = time.time()
ac = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
clf = Classifier.from_pretrained(a.clf).eval().requires_grad_(False).to(memory_format=torch.channels_last)
data = a.data
Path(a.cache).mkdir(parents=True, exist_ok=True)
tr = load_split(data, "train", dataset="cifar10"); te = load_split(data, "test", dataset="cifar10")

def spread(split, n):
    per = n // 10
    idx = torch.cat([(split.labels == c).nonzero().flatten()[:per] for c in range(10)])
    return idx

# --- eval set: gray-box PGD-10 8/255 on the classifier
key = Path(a.clf).parent.name
evf = Path(a.cache) / f"eval-{key}-{a.eval_n}.pt"
if evf.exists():
    ev = torch.load(evf)
else:
    idx = spread(te, a.eval_n); x = te.float(idx); y = te.labels[idx]
    torch.manual_seed(1)
    atk = make_attack("pgd", clf, 8/255, steps=10)
    xa = torch.cat([atk(x[i:i+250], y[i:i+250]) for i in range(0, len(x), 250)])
    ev = {"x": x, "y": y, "xa": xa}; torch.save(ev, evf)
with torch.no_grad():
    ok_c = clf(ev["x"]).argmax(1) == ev["y"]; ok_a = clf(ev["xa"]).argmax(1) == ev["y"]
fooled = ok_c & ~ok_a
say(eval_clean=ok_c.float().mean().item(), eval_attacked=ok_a.float().mean().item(), fooled=int(fooled.sum()))

# --- training pool
pf = Path(a.cache) / f"pool-{key}-{a.pool_n}.pt"
KINDS = ("fgsm", "pgd", "mifgsm", "cw")
EPS = (2/255, 4/255, 6/255, 8/255, 12/255, 16/255)
if pf.exists():
    pool = torch.load(pf)
else:
    g = torch.Generator().manual_seed(5)
    idx = torch.randperm(len(tr), generator=g)[:a.pool_n]
    kind = torch.randint(0, len(KINDS), (a.pool_n,), generator=g)
    eps = torch.randint(0, len(EPS), (a.pool_n,), generator=g)
    adv = torch.empty(a.pool_n, 3, 32, 32, dtype=torch.float16)
    for k in range(len(KINDS)):
        for e in range(len(EPS)):
            j = ((kind == k) & (eps == e)).nonzero().flatten()
            if KINDS[k] == "cw":
                atk = torchattacks.CW(clf, c=1.0, kappa=0, steps=30, lr=0.01)
            else:
                atk = make_attack(KINDS[k], clf, EPS[e], steps=10)
            for i in range(0, len(j), 256):
                jj = j[i:i+256]
                x, y = tr.float(idx[jj]), tr.labels[idx[jj]]
                with ac():
                    adv[jj] = atk(x, y).half()
            say(pool=KINDS[k], eps=round(EPS[e]*255), n=len(j))
    pool = {"idx": idx, "adv": adv, "kind": kind, "eps": eps}
    torch.save(pool, pf)
if a.pool_only:
    sys.exit()

# --- model
import torch.nn as nn


class UNet(nn.Module):
    def __init__(self, w):
        super().__init__()
        c = lambda i, o, s=1: nn.Sequential(nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))
        self.e1 = nn.Sequential(c(3, w), c(w, w)); self.e2 = nn.Sequential(c(w, 2*w, 2), c(2*w, 2*w))
        self.e3 = nn.Sequential(c(2*w, 4*w, 2), c(4*w, 4*w), c(4*w, 4*w))
        self.u2 = nn.Upsample(scale_factor=2); self.d2 = nn.Sequential(c(6*w, 2*w), c(2*w, 2*w))
        self.d1 = nn.Sequential(c(3*w, w), c(w, w)); self.out = nn.Conv2d(w, 3, 1)
        nn.init.zeros_(self.out.weight); nn.init.zeros_(self.out.bias)
    def forward(self, x):
        h1 = self.e1(x * 2 - 1); h2 = self.e2(h1); h3 = self.e3(h2)
        d2 = self.d2(torch.cat([self.u2(h3), h2], 1)); d1 = self.d1(torch.cat([self.u2(d2), h1], 1))
        return (x + self.out(d1)).clamp(0, 1)
if a.unet:
    ism = UNet(a.unet)
elif a.init == "scratch":
    ism = ISMNetwork(ISMConfig(detail_channels=max(a.detail, 0)))
else:
    ism = ISMNetwork.from_pretrained(a.init)
ism = ism.to(memory_format=torch.channels_last)
from ism.eval.metrics import psnr


@torch.no_grad()
def evaluate(tag):
    ism.eval()
    with ac():
        rc = torch.cat([ism(ev["x"][i:i+250]).float() for i in range(0, len(ev["x"]), 250)])
        ra = torch.cat([ism(ev["xa"][i:i+250]).float() for i in range(0, len(ev["x"]), 250)])
        pc = clf(rc).argmax(1); pa = clf(ra).argmax(1)
    y = ev["y"]
    r = dict(tag=tag, restored=round(((pa == y) & fooled).sum().item() / fooled.sum().item(), 3),
             acc_ism_adv=round((pa == y).float().mean().item(), 3), acc_ism_clean=round((pc == y).float().mean().item(), 3),
             psnr_clean=round(psnr(rc, ev["x"]).mean().item(), 2), psnr_adv=round(psnr(ra, ev["x"]).mean().item(), 2))
    say(**r); ism.train(); return r

evaluate("init")
n = a.pool_n; nb = int(a.bs * (1 - a.clean_frac)); nc = a.bs - nb
steps_per_epoch = n // nb; total = int(a.epochs * steps_per_epoch)
opt = torch.optim.AdamW(ism.parameters(), lr=a.lr, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=total, pct_start=0.1)
ck = out / "ckpt.pt"; step = 0
if ck.exists():
    s = torch.load(ck); ism.load_state_dict(s["m"]); opt.load_state_dict(s["o"]); sched.load_state_dict(s["s"]); step = s["step"]
    say(resumed=step)
ism.train()
g = torch.Generator().manual_seed(11)
perm = None
while step < total:
    if perm is None or step % steps_per_epoch == 0 or perm is None:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(100 + step // steps_per_epoch))
    i0 = (step % steps_per_epoch) * nb
    j = perm[i0:i0+nb]
    xi = pool["idx"][j]
    x = tr.float(xi); xa = pool["adv"][j].float(); y = tr.labels[xi]
    cj = torch.randint(0, len(tr), (nc,), generator=g)
    xc = tr.float(cj); yc = tr.labels[cj]
    inp = torch.cat([xa, xc]); tgt = torch.cat([x, xc]); yy = torch.cat([y, yc])
    flip = (torch.rand(len(inp), generator=g) < 0.5).view(-1, 1, 1, 1)
    inp, tgt = torch.where(flip, inp.flip(3), inp), torch.where(flip, tgt.flip(3), tgt)
    inp = inp.contiguous(memory_format=torch.channels_last); tgt = tgt.contiguous(memory_format=torch.channels_last)
    with ac():
        with torch.no_grad():
            lt = clf(tgt).float()
        o = ism(inp).float()
        lo = clf(o).float()
        loss = a.w_pix * F.mse_loss(o, tgt) + a.w_guide * (lo - lt).abs().mean()
        if a.w_ce:
            loss = loss + a.w_ce * F.cross_entropy(lo, yy)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step(); step += 1
    if step % 25 == 0:
        say(step=step, total=total, loss=round(loss.item(), 4))
    if step % steps_per_epoch == 0 or step == total:
        torch.save({"m": ism.state_dict(), "o": opt.state_dict(), "s": sched.state_dict(), "step": step}, ck)
        evaluate(f"step{step}")
torch.save(ism.state_dict(), out / "final.pt")
say(done=True)
