"""Gray-box examples as a picture: a few test images, the attack, and what the classifier then reads.

The evaluation's gray-box numbers say *how often* the defense undoes an attack; this figure shows
*what* the attack did. Columns are test images; rows are the clean image, the attacked image
(crafted against the protected classifier alone, as in ``ism.eval.evaluation``'s gray-box section) and
the image the pipeline's classifier reads for it (``Defense.read``). Each panel is titled
with the pipeline's prediction, green when right.

    python -m ism.eval.gallery --dataset celeba --attack pgd --eps 0.3 --out results/celeba-graybox-pgd-0.3.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ism.attacks.standard import ATTACKS, make_attack, parse_eps
from ism.data.datasets import DATASETS, load_split
from ism.data.images import to_display
from ism.data.subsets import spread
from ism.defense import Defense, load_defense, resolve_weights


def graybox_examples(defense: Defense, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                     steps: int = 10, seed: int = 0) -> dict:
    """Rows of the figure for images ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,).

    Returns {"clean" | "attacked" | "classifier reads": (images, pipeline predictions)} and
    "detected": the detector's verdict on the attacked images."""
    xa = make_attack(attack, defense.classifier, eps, steps=steps, seed=seed)(x, y)
    with torch.no_grad():
        clean_logits = defense.predict(x)
        r = defense.read(xa)
    pred = r.logits.argmax(1)
    return {"clean": (x, clean_logits.argmax(1)), "attacked": (xa, pred),
            "classifier reads": (r.image, pred), "detected": r.detection.attacked}


def plot_examples(rows: dict, y: torch.Tensor, classes: list, title: str):
    names = [k for k in rows if k != "detected"]
    n = len(y)
    fig = Figure(figsize=(1.6 * n, 1.9 * len(names)))
    axes = fig.subplots(len(names), n, squeeze=False)
    for r, name in enumerate(names):
        images, pred = rows[name]
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(to_display(images[c:c + 1]))
            ax.set_xticks([]); ax.set_yticks([])
            ok = bool(pred[c] == y[c])
            ax.set_title(classes[int(pred[c])], fontsize=8, color="green" if ok else "red")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m ism.eval.gallery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    p.add_argument("--data", default=None, help="data root (default: the shared copy)")
    p.add_argument("--weights", default=None, help="weights folder or Hub repo id (default weights/<dataset>)")
    p.add_argument("--attack", default="pgd", choices=ATTACKS)
    p.add_argument("--eps", default="0.3", help="L-inf bound in [0, 1] units, or a fraction such as 8/255")
    p.add_argument("--images", type=int, default=6, help="test images, spread over the test set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG path (default results/<dataset>-graybox-<attack>-<eps>.png, / as -)")
    a = p.parse_args(argv)
    if not 1 <= a.images <= 32:
        p.error("--images must lie in 1..32")
    try:
        eps = parse_eps(a.eps)
    except (ValueError, ZeroDivisionError):
        eps = -1.0
    if not 0.0 <= eps <= 1.0:
        p.error(f"--eps must be a number in [0, 1] or a fraction such as 8/255, got {a.eps!r}")
    d = load_defense(resolve_weights(a.weights or f"weights/{a.dataset}", None))
    test = load_split(a.data or DATASETS[a.dataset].root, "test", dataset=a.dataset, image_size=d.image_size)
    idx = spread(len(test), a.images, a.seed)
    x, y = test.float(idx), test.labels[idx]
    rows = graybox_examples(d, x, y, a.attack, eps, seed=a.seed)
    right = {k: int((rows[k][1] == y).sum()) for k in ("clean", "attacked")}
    title = (f"{DATASETS[a.dataset].title}: gray-box {a.attack.upper()} eps {a.eps} against the classifier; "
             f"pipeline right on {right['clean']}/{len(y)} clean, {right['attacked']}/{len(y)} attacked; "
             f"detected {int(rows['detected'].sum())}/{len(y)}")
    out = Path(a.out or f"results/{a.dataset}-graybox-{a.attack}-{a.eps.replace('/', '-')}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_examples(rows, y, d.classes, title).savefig(out, dpi=100)
    print(f"{title}\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
