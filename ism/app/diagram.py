"""The pipeline as a picture (matplotlib), for the app's 'how it works' view."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

BOXES = {
    "input x": (0.06, 0.55, "#eeeeee"),
    "ISM network\n(encoder → 128-d code → decoder)": (0.27, 0.55, "#d6e9f8"),
    "detector on\nx − ISM(x)": (0.50, 0.55, "#fde2c8"),
    "classifier(x)": (0.50, 0.15, "#e3f2dc"),
    "regeneration\nz₀ → … → z_L, G(z) ≈ ISM(x)": (0.73, 0.55, "#eadcf5"),
    "classifier(final image:\nISM output or regenerated)": (0.93, 0.55, "#e3f2dc"),
}
ARROWS = [("input x", "ISM network\n(encoder → 128-d code → decoder)", ""),
          ("ISM network\n(encoder → 128-d code → decoder)", "detector on\nx − ISM(x)", ""),
          ("detector on\nx − ISM(x)", "classifier(x)", "clean"),
          ("detector on\nx − ISM(x)", "regeneration\nz₀ → … → z_L, G(z) ≈ ISM(x)", "attacked"),
          ("regeneration\nz₀ → … → z_L, G(z) ≈ ISM(x)", "classifier(final image:\nISM output or regenerated)", "")]


def pipeline_figure(gate: bool = True):
    """The pipeline; with ``gate=False`` every input is purified and the detector only reports."""
    boxes, arrows = dict(BOXES), list(ARROWS)
    if not gate:
        boxes.pop("classifier(x)")
        arrows = [(a, b, "every input" if label == "attacked" else label) for a, b, label in arrows if b != "classifier(x)"]
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    ax.set_xlim(-0.04, 1.06)
    ax.set_ylim(0, 0.8)
    ax.axis("off")
    if not gate:
        ax.text(0.50, 0.36, "reports P(attacked) and strength;\ndoes not gate", ha="center", fontsize=8, color="#a33")
    for text, (x, y, color) in boxes.items():
        ax.add_patch(FancyBboxPatch((x - 0.085, y - 0.1), 0.17, 0.2, boxstyle="round,pad=0.01", fc=color, ec="#555"))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5)
    for a, b, label in arrows:
        (xa, ya, _), (xb, yb, _) = boxes[a], boxes[b]
        if ya == yb:
            start, end = (xa + 0.087, ya), (xb - 0.087, yb)
        else:
            start, end = (xa, ya - 0.102), (xb, yb + 0.102)
        ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", color="#333"))
        if label:
            dx, dy = (-0.025, 0.025) if ya == yb else (0.01, 0)
            ax.text((start[0] + end[0]) / 2 + dx, (start[1] + end[1]) / 2 + dy, label, fontsize=8, color="#a33")
    fig.tight_layout()
    return fig
