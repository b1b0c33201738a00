"""Rules tried for "is this upload outside the defense's data set?" (issue "plain words", item 2), measured
before the data-set recogniser (train/recogniser.py) was chosen; results/outside-the-data-set.md.

Each rule scores every picture; its threshold keeps 5% (or 1%) of the served data set's test pictures flagged,
and the figure is the share of the other data set's test pictures it then flags (2,000 of each, seed 0; the
Gaussians are fitted on 10,000 training pictures):
- ``penultimate``: class-conditional Mahalanobis distance on the classifier's penultimate features (Lee et al.
  2018, one layer), the classifier's 1 - max softmax, and its negative energy (-logsumexp of the logits);
- ``layers``: a Mahalanobis distance (one Gaussian) on the mean and standard deviation of every activation layer
  of the classifier, also on uniform noise and flat colours (threshold at 1%).

    python research/outside_rules.py penultimate
    python research/outside_rules.py layers
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ism.data.datasets import load_split  # noqa: E402
from ism.models.classifier import Classifier  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFENSES = ["cifar10-paper", "cifar10", "celeba-paper", "celeba"]


def fit(x, size):
    x = x.float() / 255
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                                       align_corners=False)


def splits(name: str, size: int):
    ds = "celeba" if "celeba" in name else "cifar10"
    other = "cifar10" if ds == "celeba" else "celeba"
    tr, te = load_split(DATA / ds, "train", dataset=ds), load_split(DATA / ds, "test", dataset=ds)
    oo = load_split(DATA / other, "test", dataset=other)
    g = torch.Generator().manual_seed(0)
    itr = torch.randperm(len(tr.images), generator=g)[:10000]
    ite = torch.randperm(len(te.images), generator=g)[:2000]
    ioo = torch.randperm(len(oo.images), generator=g)[:2000]
    return (tr.images[itr], tr.labels[itr]), te.images[ite], oo.images[ioo]


def flagged(s_in, s_out, fpr):
    return round((s_out > torch.quantile(s_in, 1 - fpr)).float().mean().item(), 3)


@torch.no_grad()
def penultimate(clf, x, size, bs=500):
    out, logits = [], []
    for i in range(0, len(x), bs):
        b = fit(x[i:i + bs], size)
        h = clf.features((b - clf.mean) / clf.std)
        head = list(clf.head)
        for m in head[:-1] if clf.config.arch != "airbench" else head[:2]:
            h = m(h)
        out.append(h.flatten(1))
        logits.append(clf(b))
    return torch.cat(out), torch.cat(logits)


@torch.no_grad()
def layers(clf, x, size, bs=500):
    outs, acts = [], []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o)) for m in clf.features
             if isinstance(m, (torch.nn.ReLU, torch.nn.GELU)) or m.__class__.__name__ in ("ConvGroup", "PreActBlock")]
    for i in range(0, len(x), bs):
        acts.clear()
        clf(fit(x[i:i + bs], size))
        outs.append(torch.cat([torch.cat([a.mean((2, 3)), a.std((2, 3))], 1) for a in acts], 1))
    for h in hooks:
        h.remove()
    return torch.cat(outs)


def probe_penultimate(name: str) -> dict:
    clf = Classifier.from_pretrained(f"weights/{name}/classifier").eval().float()
    size = clf.config.image_size
    (xtr, ytr), xte, xoo = splits(name, size)
    ftr, _ = penultimate(clf, xtr, size)
    fte, lte = penultimate(clf, xte, size)
    foo, loo = penultimate(clf, xoo, size)
    mu = torch.stack([ftr[ytr == c].mean(0) for c in range(int(ytr.max()) + 1)])
    xc = ftr - mu[ytr]
    prec = torch.linalg.inv(xc.T @ xc / len(ftr) + 1e-4 * torch.eye(ftr.shape[1]))

    def maha(f):
        d = f[:, None, :] - mu[None]
        return torch.einsum("ncd,de,nce->nc", d, prec, d).min(1).values

    r = {"dim": ftr.shape[1]}
    for label, si, so in [("mahalanobis", maha(fte), maha(foo)),
                          ("1-max softmax", 1 - lte.softmax(1).max(1).values, 1 - loo.softmax(1).max(1).values),
                          ("-energy", -torch.logsumexp(lte, 1), -torch.logsumexp(loo, 1))]:
        r[label] = {f"flagged at {f:.0%} of test flagged": flagged(si, so, f) for f in (0.05, 0.01)}
    return r


def probe_layers(name: str) -> dict:
    clf = Classifier.from_pretrained(f"weights/{name}/classifier").eval().float()
    size = clf.config.image_size
    (xtr, _), xte, xoo = splits(name, size)
    ftr = layers(clf, xtr, size)
    mu = ftr.mean(0)
    cov = (ftr - mu).T @ (ftr - mu) / len(ftr)
    prec = torch.linalg.inv(cov + 1e-3 * cov.diagonal().mean() * torch.eye(len(mu)))

    def score(x):
        f = layers(clf, x, size) - mu
        return torch.einsum("nd,de,ne->n", f, prec, f)

    si, so = score(xte), score(xoo)
    r = {"dim": ftr.shape[1], **{f"flagged at {f:.0%}": flagged(si, so, f) for f in (0.05, 0.01)}}
    noise = (torch.rand(200, 3, size, size) * 255).to(torch.uint8)
    flat = (torch.rand(200, 3, 1, 1) * 255).expand(200, 3, size, size).to(torch.uint8)
    t = torch.quantile(si, 0.99)
    r["noise@1%"] = (score(noise) > t).float().mean().item()
    r["flat@1%"] = (score(flat) > t).float().mean().item()
    return r


if __name__ == "__main__":
    torch.set_num_threads(1)
    probe = {"penultimate": probe_penultimate, "layers": probe_layers}[sys.argv[1]]
    for name in DEFENSES:
        print(name, json.dumps(probe(name)), flush=True)
