"""Probe: push an attacked image away from the class the classifier reads now (a counter-attack), and measure
what it restores and what it costs. Reads the evaluation set ``research/probe_purifier.py`` cached:

    python -m research.probe_counter weights/cifar10/classifier .cache/probe/eval-cifar10-500.pt

Figures: results/caught-and-undone-probes.md.
"""
import json
import sys

import torch
import torch.nn.functional as F

from ism.models.classifier import Classifier

clf = Classifier.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else "weights/cifar10/classifier").eval().requires_grad_(False)
ev = torch.load(sys.argv[2] if len(sys.argv) > 2 else ".cache/probe/eval-cifar10-500.pt")
x, y, xa = ev["x"], ev["y"], ev["xa"]
with torch.no_grad():
    ok_c = clf(x).argmax(1) == y; ok_a = clf(xa).argmax(1) == y
fooled = ok_c & ~ok_a
print("fooled", int(fooled.sum()), "clean", ok_c.float().mean().item(), "adv", ok_a.float().mean().item())
def counter(inp, eps, steps, mode):
    with torch.no_grad():
        t = clf(inp).argmax(1)
    z = inp.clone()
    a = 2.5 * eps / steps
    for _ in range(steps):
        z.requires_grad_(True)
        lo = clf(z)
        if mode == "away":      # raise the loss of the class read now
            loss = F.cross_entropy(lo, t)
        else:                   # hedge: raise the loss of every class
            loss = -F.log_softmax(lo, 1).sum(1).mean()
        g, = torch.autograd.grad(loss, z)
        z = (z.detach() + a * g.sign()).clamp(inp - eps, inp + eps).clamp(0, 1)
    return z.detach()
for mode in ("away", "hedge"):
    for eps in (4/255, 8/255, 12/255):
        for steps in (1, 5):
            ra = torch.cat([counter(xa[i:i+250], eps, steps, mode) for i in range(0, 500, 250)])
            rc = torch.cat([counter(x[i:i+250], eps, steps, mode) for i in range(0, 500, 250)])
            with torch.no_grad():
                pa = clf(ra).argmax(1); pc = clf(rc).argmax(1)
            print(json.dumps(dict(mode=mode, eps=round(eps*255), steps=steps,
                  restored=round(((pa == y) & fooled).sum().item() / fooled.sum().item(), 3),
                  acc_adv=round((pa == y).float().mean().item(), 3), acc_clean=round((pc == y).float().mean().item(), 3))), flush=True)
