"""``python -m ism.evaluate --dataset cifar10 [--limit N]``: gray-box evaluation on the test set.

Writes ``results/<dataset>.json`` and ``results/<dataset>.md``; resumable (partial results in
``.cache/eval``), seeded.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from .data import load_split
from .defense import load_defense
from .evaluation import EvalConfig, evaluate, markdown

DATA = {"cifar10": "../shared/data/cifar10"}


def _fraction(text: str) -> float:
    num, _, den = text.strip().partition("/")
    return float(num) / float(den or 1)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m ism.evaluate", description=__doc__)
    p.add_argument("--dataset", default="cifar10", choices=sorted(DATA))
    p.add_argument("--data", default=None, help="data root (default: the shared copy)")
    p.add_argument("--weights", default=None, help="weights folder or Hub repo id (default weights/<dataset>)")
    p.add_argument("--limit", type=int, default=None, help="first N test images, spread over classes")
    p.add_argument("--out", default="results")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--adaptive-eps", default=None,
                   help="comma-separated epsilons for the adaptive attack, e.g. 4/255,8/255 (default: 4/255, 8/255, "
                        "16/255, 0.2, 0.3, 0.4)")
    p.add_argument("--fresh", action="store_true", help="ignore partial results from an earlier run")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m ism.evaluate " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    d = load_defense(a.weights or f"weights/{a.dataset}")
    test = load_split(a.data or DATA[a.dataset], "test")
    idx = torch.arange(len(test))
    if a.limit:
        idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(a.seed))[:a.limit].sort().values
    cfg = EvalConfig(batch_size=a.batch_size, limit=a.limit, seed=a.seed)
    if a.adaptive_eps is not None:
        cfg.adaptive_eps = [_fraction(v) for v in a.adaptive_eps.split(",") if v.strip()]
    state = Path(".cache/eval") / f"{a.dataset}-{a.limit or 'all'}-{a.seed}.json"
    if a.fresh and state.exists():
        state.unlink()
    t0 = time.time()
    res = evaluate(d, test.images[idx], test.labels[idx], cfg, state)
    res["command"], res["wall_seconds_this_run"] = command, round(time.time() - t0, 1)
    res["data"] = "CIFAR-10 (JPEG copy)" if a.dataset == "cifar10" else a.dataset
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = a.dataset if not a.limit else f"{a.dataset}-limit{a.limit}"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(res, f"Evaluation: {res['data']}", command))
    from .curves import curves_from_results, plot_curves

    for attack in EvalConfig().attacks:
        fig = plot_curves(curves_from_results(res, attack), f"{attack.upper()}, gray-box, {res['data']}: {command}")
        fig.savefig(out / f"{stem}-{attack}.png", dpi=100)
    print((out / f"{stem}.md").read_text())
    return res


if __name__ == "__main__":
    main()
