"""Accuracy-versus-epsilon curves: read from evaluation results, or measured live on a small batch."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .adaptive import make_adaptive_attack  # noqa: E402
from .attacks import make_attack  # noqa: E402
from .defense import Defense  # noqa: E402

STYLE = {"no defense": ("#999999", "o", "-"), "defense, gray-box": ("#1f77b4", "s", "-"),
         "defense, adaptive": ("#d62728", "^", "--")}


def curves_from_results(results: dict, attack: str = "pgd") -> dict:
    """{series name: [(eps, accuracy), ...]} from ``results/<dataset>.json``."""
    series = {"no defense": [], "defense, gray-box": []}
    for r in results.get("graybox", {}).values():
        if r["attack"] == attack:
            series["no defense"].append((r["eps"], r["no_defense"]))
            series["defense, gray-box"].append((r["eps"], r["defense"]))
    for r in results.get("adaptive", {}).values():
        if r.get("attack", "pgd") == attack:
            series.setdefault("defense, adaptive", []).append((r["eps"], r["defense"]))
    return {k: sorted(v) for k, v in series.items() if v}


def load_results(path: str | Path) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def plot_curves(series: dict, title: str):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, pts in series.items():
        color, marker, ls = STYLE.get(name, (None, "o", "-"))
        ax.plot([e for e, _ in pts], [a for _, a in pts], marker=marker, ls=ls, color=color, label=name)
    ax.set_xlabel("epsilon (L∞, images in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend()
    fig.tight_layout()
    return fig


def measure_curves(defense: Defense, images: torch.Tensor, labels: torch.Tensor, eps_list, attack: str = "pgd",
                   steps: int = 10, adaptive: bool = True, seed: int = 0, progress=None) -> dict:
    """Accuracy of no defense / defense (gray-box) / defense (adaptive PGD) at each epsilon."""
    series = {"no defense": [], "defense, gray-box": []}
    if adaptive:
        series["defense, adaptive"] = []
    total = len(eps_list) * (2 if adaptive else 1)
    done = 0
    for eps in eps_list:
        torch.manual_seed(seed)
        xa = make_attack(attack, defense.classifier, eps, steps, seed=seed)(images, labels) if eps > 0 else images
        with torch.no_grad():
            series["no defense"].append((eps, float((defense.classifier(xa).argmax(1) == labels).float().mean())))
            series["defense, gray-box"].append((eps, float((defense.predict(xa).argmax(1) == labels).float().mean())))
        done += 1
        if progress:
            progress(done / total, f"gray-box eps={eps:.3f}")
        if adaptive:
            torch.manual_seed(seed)
            xa = make_adaptive_attack(defense, eps, steps, eot_iter=1, seed=seed)(images, labels) if eps > 0 else images
            with torch.no_grad():
                series["defense, adaptive"].append((eps, float((defense.predict(xa).argmax(1) == labels).float().mean())))
            done += 1
            if progress:
                progress(done / total, f"adaptive eps={eps:.3f}")
    return series


def adaptive_summary(results: dict | None) -> str:
    """One plain sentence on how the defense fares against an adaptive attacker, from the results."""
    rows = (results or {}).get("adaptive", {})
    r = rows.get("pgd@0.0314")
    if not r:
        return ("Adaptive (white-box) results are not measured yet: treat gray-box figures as an upper bound.")
    gray = results.get("graybox", {}).get("pgd@0.0314", {}).get("defense")
    return (f"Honest note: against an adaptive attacker (PGD-10 through the whole defense, BPDA + EOT) at "
            f"ε = 8/255 this defense keeps {r['defense']:.0%} accuracy"
            + (f", against {gray:.0%} when the attacker ignores it (gray-box)" if gray is not None else "")
            + f" ({results['clean']['images']} test images). It stops attackers who do not know it, not those who do.")
