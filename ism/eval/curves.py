"""Accuracy-versus-epsilon curves: read from evaluation results, or measured live on a small batch."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ism.attacks.adaptive import make_adaptive_attack  # noqa: E402
from ism.attacks.standard import make_attack  # noqa: E402
from ism.defense import Defense  # noqa: E402

COLORS = {"no defense": "#999999", "this defense": "#1f77b4", "MagNet": "#2ca02c", "DDSA": "#ff7f0e"}
MARKERS = {"no defense": "o", "this defense": "s", "MagNet": "D", "DDSA": "v"}
COLUMNS = (("no defense", "base_no_defense"), ("this defense", "defense"), ("MagNet", "magnet"), ("DDSA", "ddsa"))


def curves_from_results(results: dict, attack: str = "pgd") -> dict:
    """{"<defense>, <threat model>": [(eps, accuracy), ...]} from ``results/<dataset>.json``:
    every defense in the results (no defense, this defense, MagNet, DDSA), gray-box and adaptive."""
    series = {}
    for threat, label in (("graybox", "gray-box"), ("adaptive", "adaptive")):
        for r in results.get(threat, {}).values():
            if r.get("attack", "pgd") != attack:
                continue
            for name, col in COLUMNS:
                col = col if col in r else ("no_defense" if col == "base_no_defense" else col)
                if col not in r or (name == "no defense" and threat == "adaptive"):
                    continue  # the classifier alone has no defense to adapt to: same as gray-box
                series.setdefault(f"{name}, {label}", []).append((r["eps"], r[col]))
    return {k: sorted(v) for k, v in series.items()}


def load_results(path: str | Path) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def plot_curves(series: dict, title: str):
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    for name, pts in series.items():
        who = name.split(",")[0]
        ax.plot([e for e, _ in pts], [a for _, a in pts], marker=MARKERS.get(who, "o"), color=COLORS.get(who),
                ls="--" if "adaptive" in name else "-", label=name)
    ax.set_xlabel("epsilon (L∞, images in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_roc(results: dict, title: str):
    """The detector's ROC curve for each gray-box attack and epsilon (one panel per attack)."""
    attacks = sorted({r["attack"] for r in results.get("graybox", {}).values()})
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(5 * max(1, len(attacks)), 4.4), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for r in results["graybox"].values():
            if r["attack"] == attack and "roc" in r:
                ax.plot(r["roc"]["fpr"], r["roc"]["tpr"],
                        label=f"eps {r['eps']:.3f}: AUROC {r['detector_auroc']:.4f}")
        ax.plot([0, 1], [0, 1], color="#ccc", ls=":")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false-positive rate (clean images flagged)")
        ax.set_ylabel("true-positive rate")
        ax.set_title(f"{attack.upper()}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def measure_curves(defense: Defense, images: torch.Tensor, labels: torch.Tensor, eps_list, attack: str = "pgd",
                   steps: int = 10, adaptive: bool = True, seed: int = 0, progress=None) -> dict:
    """Accuracy of no defense / defense (gray-box) / defense (adaptive PGD) at each epsilon."""
    series = {"no defense, gray-box": [], "this defense, gray-box": []}
    if adaptive:
        series["this defense, adaptive"] = []
    total = len(eps_list) * (2 if adaptive else 1)
    done = 0
    for eps in eps_list:
        torch.manual_seed(seed)
        xa = make_attack(attack, defense.classifier, eps, steps, seed=seed)(images, labels) if eps > 0 else images
        with torch.no_grad():
            series["no defense, gray-box"].append((eps, float((defense.classifier(xa).argmax(1) == labels).float().mean())))
            series["this defense, gray-box"].append((eps, float((defense.predict(xa).argmax(1) == labels).float().mean())))
        done += 1
        if progress:
            progress(done / total, f"gray-box eps={eps:.3f}")
        if adaptive:
            torch.manual_seed(seed)
            xa = make_adaptive_attack(defense, eps, steps, eot_iter=1, seed=seed)(images, labels) if eps > 0 else images
            with torch.no_grad():
                series["this defense, adaptive"].append((eps, float((defense.predict(xa).argmax(1) == labels).float().mean())))
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
    n = r.get("images", results["clean"]["images"])
    verdict = ("It stops attackers who do not know it, not those who do." if r["defense"] < 0.2 else
               "Part of that survives an attacker who knows it; read the curves before trusting a gray-box figure.")
    return (f"Honest note: against an adaptive attacker (PGD-10 through the whole defense, BPDA + EOT) at "
            f"ε = 8/255 this defense keeps {r['defense']:.0%} accuracy"
            + (f", against {gray:.0%} when the attacker ignores it (gray-box)" if gray is not None else "")
            + f" ({n} test images). {verdict}")
