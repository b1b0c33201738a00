"""One finished run as one picture, for slides: every stage with its caption and top-3 reading, the
detector's verdict and the sentence that says what happened (issue 16)."""
from __future__ import annotations

import textwrap

import numpy as np

from ism.app.demo import DemoState


def _probs(top3: dict | None) -> str:
    return "\n".join(f"{k} {v:.0%}" for k, v in (top3 or {}).items())


def run_picture(s: DemoState, title: str = "", dpi: int = 110) -> np.ndarray:
    """H x W x 3 uint8: the stages of ``s`` side by side, captioned, with its verdict underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    regen = s.regeneration[-1] if s.regeneration else None
    panels = [("1 original", s.original, _probs(s.original.top3) if s.original else ""),
              ("2 perturbation\n(amplified)", s.perturbation, s.perturbation.caption.split(" (")[0]
               if s.perturbation else ""),
              ("3 attacked: what the\nattacker's target reads", s.adversarial,
               _probs(s.adversarial.top3) if s.adversarial else ""),
              ("5 ISM purified", s.purified, _probs(s.purified.top3) if s.purified else ""),
              ("6 regenerated", regen, (f"iteration {regen.caption}\n" + _probs(regen.top3)) if regen else ""),
              ("7 what the\nclassifier read", s.final, _probs(s.final.top3) if s.final else "")]
    panels = [p for p in panels if p[1] is not None]
    det = s.detection
    fig = Figure(figsize=(2.1 * len(panels), 4.1))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, stage, caption) in zip(axes, panels):
        ax.imshow(stage.image, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(caption, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    lines = []
    if title:
        lines.append(title)
    if det:
        lines.append(f"4 detector: {'ATTACKED' if det['attacked'] else 'clean'}, P(attacked) = "
                     f"{det['probability']:.2f} (threshold {det['threshold']:.2f})")
    if s.verdict:
        lines += textwrap.wrap(s.verdict.replace("**", ""), width=int(30 * len(panels)))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, va="bottom", ha="left", wrap=True)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.16 + 0.045 * len(lines), wspace=0.25)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
