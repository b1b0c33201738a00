"""The pipeline as a picture (matplotlib), for the app's 'how it works' view, true to the served defense: whether
the detector gates, and which picture the classifier reads at the end."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

ISM = "ISM network:\nsqueezes it to 128\nnumbers, rebuilds it"
DETECTOR = "detector: reads\nwhat the ISM\ntook out, x − ISM(x)"
CLEAN = "classifier reads\nthe picture as it is"
REGEN = "regeneration: a GAN\nredraws the purified\npicture, step by step"
FINAL = {   # by DefenseConfig.final_input
    "purified": "classifier reads\nthe purified\npicture",
    "regenerated": "classifier reads\nthe redrawn\npicture",
    "mean": "classifier reads the\nmean of purified\nand redrawn",
}
WATCH = "shown to you; the\nclassifier ignores it"
MAIN, BELOW = 0.55, 0.15    # the rows' heights
REGEN_X = 0.73              # regeneration's column: in the main row, or below it
BOXES = {   # plain words, at most 21 characters a line: each line fits its box (tests/test_layout.py)
    "your picture x": (0.06, MAIN, "#eeeeee"),
    ISM: (0.27, MAIN, "#d6e9f8"),
    DETECTOR: (0.50, MAIN, "#fde2c8"),
    CLEAN: (0.50, BELOW, "#e3f2dc"),
}
FINAL_COLOR, REGEN_COLOR = "#e3f2dc", "#eadcf5"
HALF_W, HALF_H = 0.085, 0.1


def pipeline_figure(gate: bool, final_input: str):
    """The pipeline. ``gate=False``: every input is purified and the detector only reports. ``final_input``:
    the picture the classifier reads; when that is the purified one, regeneration is drawn beside the main
    flow (shown to the visitor, not read)."""
    final = FINAL[final_input]
    boxes = dict(BOXES)
    boxes[final] = (0.94, MAIN, FINAL_COLOR)
    into = "attacked" if gate else "every input"
    arrows = [("your picture x", ISM, "", False), (ISM, DETECTOR, "", False)]
    if gate:
        arrows.append((DETECTOR, CLEAN, "clean", False))
    else:
        boxes.pop(CLEAN)
    if final_input == "purified":
        boxes[REGEN] = (REGEN_X, BELOW, REGEN_COLOR)
        arrows += [(DETECTOR, final, into, False), ((REGEN_X, MAIN), REGEN, WATCH, True)]
    else:
        boxes[REGEN] = (REGEN_X, MAIN, REGEN_COLOR)
        arrows += [(DETECTOR, REGEN, into, False), (REGEN, final, "", False)]
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    ax.set_xlim(-0.04, 1.06)
    ax.set_ylim(0, 0.8)
    ax.axis("off")
    if not gate:
        ax.text(0.50, 0.36, "reports the chance it was attacked\nand its strength; does not gate", ha="center",
                fontsize=8, color="#a33")
    for text, (x, y, color) in boxes.items():
        ax.add_patch(FancyBboxPatch((x - HALF_W, y - HALF_H), 2 * HALF_W, 2 * HALF_H, boxstyle="round,pad=0.01",
                                    fc=color, ec="#555", gid=text))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, gid=text)
    for a, b, label, aside in arrows:
        (xb, yb, _) = boxes[b]
        if isinstance(a, tuple):      # from a point on another arrow, down to a box
            start, end = a, (xb, yb + HALF_H + 0.002)
        else:
            (xa, ya, _) = boxes[a]
            if ya == yb:
                start, end = (xa + HALF_W + 0.002, ya), (xb - HALF_W - 0.002, yb)
            else:
                start, end = (xa, ya - HALF_H - 0.002), (xb, yb + HALF_H + 0.002)
        ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", color="#777" if aside else "#333",
                                                    linestyle="--" if aside else "-"))
        if label and start[1] == end[1]:   # over the arrow; over the boxes where the arrow is short
            y = start[1] + (0.025 if end[0] - start[0] > 0.1 else HALF_H + 0.03)
            ax.text((start[0] + end[0]) / 2, y, label, fontsize=8, color="#a33", ha="center")
        elif label:                        # beside it
            ax.text(start[0] + 0.01, (start[1] + end[1]) / 2, label, fontsize=8, color="#a33",
                    va="center" if aside else "baseline")
    fig.tight_layout()
    return fig
