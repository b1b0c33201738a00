"""The pipeline as a picture (matplotlib), for the app's 'how it works' view."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

ISM = "ISM network:\nsqueezes it to 128\nnumbers, rebuilds it"
DETECTOR = "detector: reads\nwhat the ISM\ntook out, x − ISM(x)"
CLEAN = "classifier reads\nthe picture as it is"
REGEN = "regeneration: a GAN\nredraws the purified\npicture, step by step"
FINAL = "classifier reads\nthe purified (or\nredrawn) picture"
BOXES = {   # plain words, at most 21 characters a line: each line fits its box (tests/test_layout.py)
    "your picture x": (0.06, 0.55, "#eeeeee"),
    ISM: (0.27, 0.55, "#d6e9f8"),
    DETECTOR: (0.50, 0.55, "#fde2c8"),
    CLEAN: (0.50, 0.15, "#e3f2dc"),
    REGEN: (0.73, 0.55, "#eadcf5"),
    FINAL: (0.94, 0.55, "#e3f2dc"),
}
ARROWS = [("your picture x", ISM, ""), (ISM, DETECTOR, ""), (DETECTOR, CLEAN, "clean"), (DETECTOR, REGEN, "attacked"),
          (REGEN, FINAL, "")]


def pipeline_figure(gate: bool = True):
    """The pipeline; with ``gate=False`` every input is purified and the detector only reports."""
    boxes, arrows = dict(BOXES), list(ARROWS)
    if not gate:
        boxes.pop(CLEAN)
        arrows = [(a, b, "every input" if label == "attacked" else label) for a, b, label in arrows if b != CLEAN]
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    ax.set_xlim(-0.04, 1.06)
    ax.set_ylim(0, 0.8)
    ax.axis("off")
    if not gate:
        ax.text(0.50, 0.36, "reports the chance it was attacked\nand its strength; does not gate", ha="center", fontsize=8, color="#a33")
    for text, (x, y, color) in boxes.items():
        ax.add_patch(FancyBboxPatch((x - 0.085, y - 0.1), 0.17, 0.2, boxstyle="round,pad=0.01", fc=color, ec="#555",
                                    gid=text))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, gid=text)
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
