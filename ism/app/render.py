"""What the page shows of a run: each streamed ``DemoState`` as the /defend endpoint's named outputs, its pictures
as PNG files encoded once, and the panels' words."""
from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import uuid
from pathlib import Path

from ism.app.demo import DemoState, chances, top_name
from ism.app.picture import run_picture

# The /defend endpoint's outputs, in this order: the one place the public API's order is written
# (app.py builds its components from these names; README, tests and benchmarks index by name).
OUTPUTS = ("original", "original_top3", "perturbation", "perturbation_text", "adversarial", "adversarial_top3",
           "detector_verdict", "detector_text", "purified", "purified_top3", "regenerated", "regenerated_text",
           "frames", "final", "final_top3", "verdict", "notes", "warnings", "timings", "final_text",
           "regeneration_plot", "picture", "counter", "counter_text")


def output(result, name: str):
    """One named output from a /defend result (gradio_client's tuple, in ``OUTPUTS`` order)."""
    return result[OUTPUTS.index(name)]


UPLOAD_NOTE = ("Your own picture has no true label here: the attacker targets the classifier's own answer on it, "
               "and the final answer is compared with that answer, never called right or wrong. The classifier can "
               "only answer one of its data set's classes, whatever the picture shows.")


def png_file(image, folder: str | None = None) -> str | None:
    """``image`` (H x W x 3 uint8) as a PNG file in ``folder`` (default: gradio's cache folder, which it serves
    from without copying), named by its content and written under a temporary name then renamed into place.
    Gradio writes an image output in place at its content's path, so concurrent runs of one example rewrote a
    file while it was being served (h11 "Too little/much data for declared Content-Length"); a file here is
    never rewritten."""
    if image is None:
        return None
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)   # (a third faster than 6; files 10% larger)
    data = buf.getvalue()
    path = Path(folder or upload_folder()) / hashlib.sha256(data).hexdigest() / "image.png"
    if _handed_out(str(path)):      # handed out again: not deleted on its first use's schedule
        return str(path)
    tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
    for attempt in range(3):        # (the pool's sweep may remove the new, still empty folder in between)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_bytes(data)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    os.replace(tmp, path)
    return str(path)


def upload_folder() -> str:
    """Gradio's cache folder: the files the page is given from here are served as they are."""
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def stage_file(stage, folder: str | None = None) -> str:
    """A stage's image as a PNG file, encoded once: the same file for every state and visitor of a run (a run
    computed in a worker shares its stages between its states, ism/app/runner.py; the worker encodes them,
    ``encode``), made again only if the server's clean-up deleted it."""
    if stage.file is None or not _handed_out(stage.file):
        stage.file = png_file(stage.image, folder)
    return stage.file


def encode(s: DemoState, frames: list, folder: str) -> None:
    """What a run worker does before it sends a state: encode the pictures of its stages and of the new
    regeneration ``frames`` into ``folder`` and, once the run is done, its frames gallery and slide picture
    (``finished_files``). The server's one Python thread then only checks that the files are there: with the
    workers encoding, it serves more visitors (benchmarks/results/serving.md)."""
    for st in (s.original, s.perturbation, s.adversarial, s.purified, s.counter, s.final, *frames):
        if st is not None:
            stage_file(st, folder)
    if s.done:
        s.rendered["files"] = finished_files(s, folder)


def finished_files(s: DemoState, folder: str | None = None) -> dict:
    """A finished run's frames gallery (file, caption) and its slide picture, as files."""
    return {"frames": [(stage_file(st, folder), frame_caption(st)) for st in s.regeneration],
            "picture": png_file(run_picture(s, s.adversarial.caption.split(":")[0] + f", L∞ {s.linf * 255:.1f}/255"),
                                folder)}


def _there(files: dict | None) -> bool:
    """Whether every file of ``finished_files`` is still there (and touched: handed out again)."""
    return bool(files) and all([_handed_out(f) for f in (files["picture"], *(f for f, _ in files["frames"]))])


def _handed_out(path: str) -> bool:
    """Whether the file ``path`` still exists; if so it is touched, so that the server's clean-up (by age,
    ``ISM_DELETE_AFTER``) counts from now: a cached run's pictures are handed out again."""
    try:
        os.utime(path)
        return True
    except OSError:
        return False


_render_lock = threading.Lock()


def _rendered(s: DemoState) -> dict:
    """What the page shows of a finished run beyond its stages (the frames gallery, the slide picture, the
    regeneration curve), made once by the first of its visitors (the others wait for it) and made again only
    if the server's clean-up deleted a file meanwhile."""
    with _render_lock:
        lock = s.rendered.setdefault("lock", threading.Lock())
    with lock:
        made = s.rendered.get("made")
        if made and _there(made):
            return made
        files = s.rendered.get("files")           # (encoded by the run's worker)
        made = {**(files if _there(files) else finished_files(s)),
                "plot": regeneration_curve(s.regen_errors) if s.regen_errors else None}
        s.rendered["made"] = made
        return made


def state_values(s: DemoState, picture, label: int | None) -> dict:
    """{output name: value} for one streamed state of a run on ``picture``; the frames gallery stays empty until
    the run is done. Images are PNG files (``png_file``). A picture outside the data set is said under the
    headline; how it was prepared, in the notes."""
    regen = s.regeneration[-1] if s.regeneration else None
    img = stage_file
    done = _rendered(s) if s.done else {}     # made once per finished run, shared by every visitor who sees it
    values = {
        "original": img(s.original) if s.original else None,
        "original_top3": s.original.top3 if s.original else None,
        "perturbation": img(s.perturbation) if s.perturbation else None,
        "perturbation_text": s.perturbation.caption if s.perturbation else "",
        "adversarial": img(s.adversarial) if s.adversarial else None,
        "adversarial_top3": s.adversarial.top3 if s.adversarial else None,
        "detector_verdict": ("ATTACKED" if s.detection["attacked"] else "clean") if s.detection else None,
        "detector_text": detection_text(s.detection),
        "purified": img(s.purified) if s.purified else None,
        "purified_top3": s.purified.top3 if s.purified else None,
        "regenerated": img(regen) if regen else None,
        "regenerated_text": (f"iteration {regen.caption.split(':')[0]}. The classifier reads {top3_text(regen.top3)}"
                             + (f"\n\n{re.sub(r' [(]mean squared[^)]*[)]', '', s.regen_stop)}" if s.regen_stop else "")
                             + f"\n\n<details><summary>in numbers</summary>\n\nHow far the drawing is from panel 5: "
                               f"{regen.caption.split(': ', 1)[-1].split(' from')[0]} (the mean over pixels of the "
                               f"squared difference). {s.regen_stop}\n\n</details>") if regen else "",
        "frames": done.get("frames", []),
        "final": img(s.final) if s.final else None,
        "final_top3": s.final.top3 if s.final else None,
        "verdict": (f"### {s.headline}\n\n" + (f"*{CAUGHT_MEANS}*\n\n" if s.detection and s.detection["attacked"] else "")
                    + (f"⚠️ {picture.outside}\n\n" if picture.outside else "")
                    + f"<details><summary>What happened, step by step</summary>\n\n{s.verdict}"
                    "\n\n</details>") if s.verdict else f"*{s.waiting or 'running…'}*",
        "notes": "\n\n".join(f"ℹ️ {n}" for n in (picture.note, "" if label is not None else UPLOAD_NOTE,
                                                   getattr(picture, "about", "")) if n),
        "warnings": "\n".join(f"- ⚠️ {w}" for w in s.warnings),
        "timings": timings_text(s),
        "final_text": s.final.caption if s.final else "",
        "regeneration_plot": done.get("plot"),
        "picture": done.get("picture"),
        "counter": img(s.counter) if s.counter else None,
        "counter_text": s.counter.caption if s.counter else "",
    }
    assert tuple(values) == OUTPUTS
    return values



ITERATION_TICKS = [str(i) for i in range(16)]   # a short run's iterations, in order, as the plot's named ticks


def regeneration_curve(errors: list[float]):
    """The regeneration's error (MSE against the purified image) at each iteration, as the table the page
    draws itself (gr.LinePlot). A matplotlib figure drawn on the server for it took 75 ms of every run.
    A short run's iterations are names ("0", "1", ..., in ITERATION_TICKS order), one tick each: as numbers
    the axis ticked 0.5, 1.5; from 16 on, numbers tick at whole steps of 2 or more."""
    import pandas as pd

    steps = range(len(errors))
    return pd.DataFrame({"iteration": [str(i) for i in steps] if len(errors) <= len(ITERATION_TICKS) else list(steps),
                         "difference from panel 5 (mean squared)": [float(e) for e in errors]})


def frame_caption(stage) -> str:
    """A regeneration frame's caption: its iteration and what the classifier reads on it."""
    step = stage.caption.split(":")[0]
    if not stage.top3:                       # (not read: a frame from an older worker or a stopped run)
        return f"#{step}"
    name = top_name(stage.top3)
    return f"#{step}: {name} {stage.top3[name]:.0%}"


def top3_text(top: dict) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in top.items())


CAUGHT_MEANS = ("Caught does not mean refused: the picture is still cleaned (panel 5) and answered, so a caught "
                "attack can still get through.")


def detection_text(det: dict | None) -> str:
    """Panel 4 in plain words: its verdict, its chance, and what a verdict of attacked does; the threshold folded.
    (Its guess of the attack's strength is not shown: on uploaded photos it read an 8/255 attack as 26-28/255.)"""
    if not det:
        return ""
    verdict = "ATTACKED" if det["attacked"] else "clean"
    p, t = chances(det["probability"], det["threshold"])
    does = CAUGHT_MEANS if det["attacked"] else "It lets the picture through as it is."
    if not det.get("gate", True):
        does = ("It only reports: every picture is cleaned (panel 5) and answered whatever it says, so a caught "
                "attack can still get through.")
    return (f"**{verdict}**: chance it was attacked {p}. {does}\n\n<details><summary>in numbers</summary>\n\n"
            f"It says attacked above {t}. It cannot tell how strong the attack was: its own guess is not calibrated "
            "(on uploaded photos it read an 8/255 attack as 26-28/255), so it is not shown.\n\n</details>")


def timings_text(s: DemoState) -> str:
    rows = []
    for name, st in (("classify original", s.original), ("attack", s.adversarial), ("ISM purify", s.purified),
                     ("final classification", s.final)):
        if st is not None:
            rows.append(f"| {name} | {st.seconds * 1000:.0f} ms |")
    if s.detection:
        rows.insert(2, f"| detect | {s.detection['seconds'] * 1000:.0f} ms |")
    if s.regeneration:
        rows.append(f"| regeneration ({len(s.regeneration) - 1} iterations) | {s.regeneration[-1].seconds * 1000:.0f} ms |")
    return "| stage | time |\n|---|---|\n" + "\n".join(rows) if rows else ""


