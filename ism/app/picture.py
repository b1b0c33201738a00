"""One finished run as one picture, for slides: every stage with its caption and top-3 reading, the
detector's verdict and the sentence that says what happened (issue 16).

Drawn with PIL in matplotlib's DejaVu Sans: it is made for every finished run, and a matplotlib figure
with this much text took a quarter of a second of the run's latency (now a few milliseconds).
"""
from __future__ import annotations

import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ism.app.demo import DemoState, chances

PANEL = 150          # pixels per stage image (nearest-neighbour upscaled)
GAP = 24             # between panels
LINE = 15            # text line height
TITLE_LINES, CAPTION_LINES = 2, 4


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def _probs(top3: dict | None) -> str:
    return "\n".join(f"{k} {v:.0%}" for k, v in (top3 or {}).items())


def _centred(draw: ImageDraw.ImageDraw, lines: list[str], cx: int, y: int, font) -> None:
    for i, line in enumerate(lines):
        draw.text((cx, y + i * LINE), line, fill="black", font=font, anchor="ma")


def run_picture(s: DemoState, title: str = "") -> np.ndarray:
    """H x W x 3 uint8: the stages of ``s`` side by side, captioned, with its verdict underneath."""
    regen = s.regeneration[-1] if s.regeneration else None
    panels = [("1 original", s.original, _probs(s.original.top3) if s.original else ""),
              ("2 perturbation\n(amplified)", s.perturbation, f"L∞ = {s.linf:.4f}"
               if s.perturbation else ""),
              ("3 attacked: what the\nattacker's target reads", s.adversarial,
               _probs(s.adversarial.top3) if s.adversarial else ""),
              ("5 ISM purified", s.purified, _probs(s.purified.top3) if s.purified else ""),
              ("6 regenerated", regen, (f"iteration {regen.caption}\n" + _probs(regen.top3)) if regen else ""),
              ("7 what the\nclassifier read", s.final, _probs(s.final.top3) if s.final else "")]
    panels = [p for p in panels if p[1] is not None]
    lines = [title] if title else []
    det = s.detection
    if det:
        chance, threshold = chances(det["probability"], det["threshold"])
        lines.append(f"4 detector: {'ATTACKED' if det['attacked'] else 'clean'}, chance it was attacked {chance} "
                     f"(attacked above {threshold})")
    width = len(panels) * (PANEL + GAP) + GAP
    if s.headline:
        lines += textwrap.wrap(s.headline, width=max(40, width // 7))
    if s.verdict:
        lines += textwrap.wrap(s.verdict.replace("**", ""), width=max(40, width // 7))
    top = 12 + TITLE_LINES * LINE + 6
    bottom = top + PANEL + 8 + CAPTION_LINES * LINE + 14
    img = Image.new("RGB", (width, bottom + len(lines) * LINE + 12), "white")
    draw = ImageDraw.Draw(img)
    small, text = _font(11), _font(12)
    for i, (name, stage, caption) in enumerate(panels):
        x = GAP + i * (PANEL + GAP)
        cx = x + PANEL // 2
        names = name.split("\n")
        _centred(draw, names, cx, 12 + (TITLE_LINES - len(names)) * LINE, text)
        img.paste(Image.fromarray(stage.image).resize((PANEL, PANEL), Image.NEAREST), (x, top))
        draw.rectangle((x - 1, top - 1, x + PANEL, top + PANEL), outline="black")
        _centred(draw, caption.split("\n")[:CAPTION_LINES], cx, top + PANEL + 8, small)
    for i, line in enumerate(lines):
        draw.text((GAP // 2, bottom + i * LINE), line, fill="black", font=small)
    return np.asarray(img).copy()
