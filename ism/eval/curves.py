"""Accuracy-versus-epsilon curves and ROC plots from evaluation results (the live curve is ism.app.live)."""
from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

# The evaluation's "no defense" column is the defense's adversarially trained classifier without ISM or detector:
# named for what it is, as everywhere on the page ("no defense" is only the clean-trained classifier of Compare)
ALONE = "classifier alone (adversarially trained)"
COLORS = {ALONE: "#999999", "this defense": "#1f77b4", "MagNet": "#2ca02c", "DDSA": "#ff7f0e"}
MARKERS = {ALONE: "o", "this defense": "s", "MagNet": "D", "DDSA": "v"}
COLUMNS = ((ALONE, "base_no_defense"), ("this defense", "defense"), ("MagNet", "magnet"), ("DDSA", "ddsa"))
CLEAN = {ALONE: "base_classifier", "this defense": "pipeline", "MagNet": "magnet", "DDSA": "ddsa"}   # at ε = 0
NARROW = 16.5      # the curves show 0 to 16/255 by default (the page's strengths); ``full`` shows every epsilon


def curves_from_results(results: dict, attack: str = "pgd") -> dict:
    """{"<defense>, <threat model>": [(eps, accuracy), ...]} from ``results/<dataset>.json``:
    every defense in the results (the classifier alone, this defense, MagNet, DDSA), gray-box and adaptive."""
    series = {}
    for threat, label in (("graybox", "gray-box"), ("adaptive", "adaptive")):
        for r in results.get(threat, {}).values():
            if r.get("attack", "pgd") != attack:
                continue
            for name, col in COLUMNS:
                col = col if col in r else ("no_defense" if col == "base_no_defense" else col)
                if col not in r or (name == ALONE and threat == "adaptive"):
                    continue  # the classifier alone has no defense to adapt to: same as gray-box
                series.setdefault(f"{name}, {label}", []).append((r["eps"], r[col]))
    clean = results.get("clean", {})
    for name, pts in series.items():        # every curve starts at its clean accuracy (no attack: either threat)
        key = CLEAN.get(name.split(",")[0])
        if key in clean and not any(e == 0 for e, _ in pts):
            pts.append((0.0, clean[key]))
    return {k: sorted(v) for k, v in series.items()}


def load_results(path: str | Path) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def results_path(results_dir: str | Path, key: str) -> str:
    """The evaluation's results for the defense (or results name) ``key``: ``<results_dir>/<key>.json``, else its
    run on the most test images (``<key>-limit<N>.json``, a seeded subset spread over classes: ``--limit N``)."""
    full = Path(results_dir) / f"{key}.json"

    def images(f: Path) -> int:
        n = f.stem.rsplit("limit", 1)[1]
        return int(n) if n.isdigit() else 0

    subsets = sorted(Path(results_dir).glob(f"{key}-limit*.json"), key=images)
    return str(full if full.is_file() or not subsets else subsets[-1])


def story_examples(results_dir: str | Path, key: str, eps: float) -> set[str] | None:
    """The gallery examples whose run at the page's defaults tells the whole story (the attack fools the classifier,
    the detector catches it, the defense answers right again), from ``<results_dir>/story-<key>.json``
    (benchmarks/story.py, results/story.md); None where that was not measured at strength ``eps``."""
    res = load_results(Path(results_dir) / f"story-{key}.json")
    if not res or f"at {eps * 255:.1f}/255" not in res.get("settings", ""):
        return None
    return {r["example"] for r in res.get("runs", []) if r.get("story")}


def plot_curves(series: dict, title: str, full: bool = False):
    """Accuracy against the attack's strength in /255, as the rest of the app says it: 0 to 16/255 (the page's
    strengths), or every epsilon measured with ``full``. Adaptive curves dashed, hollow markers, drawn on top."""
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.subplots()
    for name, pts in series.items():
        who, adaptive = name.split(",")[0], "adaptive" in name
        ax.plot([e * 255 for e, _ in pts], [a for _, a in pts], marker=MARKERS.get(who, "o"), color=COLORS.get(who),
                ls="--" if adaptive else "-", lw=2.2 if adaptive else 1.5, label=name, zorder=3 if adaptive else 2,
                markerfacecolor="white" if adaptive else None, markersize=7 if adaptive else 6)
    if not full:
        ax.set_xlim(-0.3, NARROW)
        ax.set_xticks([0, 2, 4, 6, 8, 10, 12, 14, 16])
    ax.set_xlabel("attack strength ε (/255: the largest change to one pixel, of 255 brightness steps)")
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
    fig = Figure(figsize=(5 * max(1, len(attacks)), 4.4))
    axes = fig.subplots(1, max(1, len(attacks)), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for r in results["graybox"].values():
            if r["attack"] == attack and "roc" in r:
                ax.plot(r["roc"]["fpr"], r["roc"]["tpr"],
                        label=f"eps {r['eps']:.3f}: AUROC {r['detector_auroc']:.4f}")
        ax.plot([0, 1], [0, 1], color="#ccc", ls=":")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))   # plain text: mathtext is not thread-safe
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
