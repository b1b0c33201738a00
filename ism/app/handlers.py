"""What the Gradio app calls: one ``DemoHandler`` (and one ``CompareHandler``) per served defense. They take a
``RunRequest`` (ism/app/request.py), check the picture, and stream or compute the run; a bad input is one
``UserError`` sentence (the page shows it with gr.Error), never a stack trace, and the server keeps serving."""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from ism.app.compare import compare, figure, summary, table
from ism.app.compare import contenders as find_contenders
from ism.app.defenses import KIND_WORDS, OUTSIDE, examples, load_recogniser
from ism.app.demo import DemoState, run_demo
from ism.app.lesson import EXAMPLES, STEPS, contenders_for, stand_in_note
from ism.app.memo import Memo
from ism.app.request import THREATS, RunRequest, UserError
from ism.app.runner import Follower, Full, OverCap, Stopped, Waiting, Work
from ism.app.serve import ActiveRuns
from ism.data.images import ImageInputError, prepare_image, to_display
from ism.defense import Defense

MAX_FRAMES_SHOWN = 20     # frames of a regeneration a worker sends while computing: at most this many, evenly spaced
UPDATE_GAP = 0.3          # a visitor's stream carries the run's latest state at most this often (the final at once)
KEEP_ALIVE = 2.0          # and, while nothing new comes, the last one again this often
_clock = time.perf_counter   # (tests replace it with a fake clock)
FACES_NOTE = ("On faces the classifier answers one question only: CelebA's \"Male\" attribute, as the data set's "
              "annotators labelled its photos. It says nothing about who a person is or how they see themselves; "
              "reading someone as the other answer is this classifier's mistake, not a fact about them.")


def _digest(path: str) -> str:
    """Of the decoded pixels, not the file: the app's image box re-saves what it is given (an example
    picked from the gallery arrives as another PNG file with the same pixels)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return hashlib.sha1(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


class Picture(NamedTuple):
    """A visitor's picture as the models see it (``DemoHandler.prepare``)."""
    tensor: torch.Tensor
    note: str = ""       # how it was prepared (cropped, resized), or ""
    outside: str = ""    # one sentence when it does not look like the served data set, or ""
    about: str = ""      # what the classifier answers about such a picture, where that needs saying (faces)
    example: object = None   # the shipped example it is (by content), or None: an upload

    def notes(self) -> str:
        return "\n\n".join(n for n in (self.outside, self.note) if n)


class DemoHandler:
    """Holds one loaded defense (served as ``key``); one instance serves every visitor (no per-visitor state)."""

    def __init__(self, defense: Defense, key: str = "cifar10", max_seconds: float | None = None, pool=None):
        self.defense, self.max_seconds = defense, max_seconds
        self.key = key               # the defense's name on this server ("cifar10-paper"): RunRequest.defense
        self.pool = pool             # a RunPool (ism/app/runner.py): runs computed in worker processes; None: here
        self.active = ActiveRuns()   # runs in progress; a cancelled run leaves it at once
        self.examples = examples(defense, defense.config.dataset)
        self._by_digest = {_digest(e.path): e for e in self.examples}
        self._sessions: dict[str, object] = {}   # visitor session -> the run it follows (for Stop)
        self.recogniser = load_recogniser(defense)

    def outside(self, x: torch.Tensor) -> str:
        """One sentence when the recogniser calls the picture ``x`` outside the defense's data set, else ""."""
        if self.recogniser is None:
            return ""
        d = self.defense
        p = float(self.recogniser.likeness(x, d.config.dataset)[0])
        if p >= 0.5:
            return ""
        other = next(k for k in self.recogniser.config.kinds if k != d.config.dataset)
        names = ", ".join(f"'{c}'" for c in d.classes)
        return (f"{OUTSIDE} {KIND_WORDS[d.config.dataset]} ({min(1 - p, 0.99):.0%} sure, says a small network trained "
                f"to tell them from {KIND_WORDS[other]}): the classifier still answers one of {names}.")

    def example_of(self, path: str | None):
        """The shipped example the picture at ``path`` is (by content), else None."""
        try:
            return self._by_digest.get(_digest(path)) if path else None
        except (OSError, ValueError):
            return None

    def prepare(self, path) -> Picture:
        """The picture as the models see it, with a note on its preparation and, for a picture that is not an
        example, whether it is outside the data set."""
        try:
            p = prepare_image(path, self.defense.image_size)
        except ImageInputError as e:
            raise UserError(str(e)) from e
        example = self.example_of(path)
        return Picture(p.tensor, p.note, self.outside(p.tensor) if example is None else "",
                       FACES_NOTE if self.defense.config.dataset == "celeba" else "", example)

    def request(self, **settings) -> RunRequest:
        """A request on this defense: its defaults (RunRequest.for_defense) with ``settings``."""
        return RunRequest.for_defense(self.key, self.defense, **settings)

    def run(self, req: RunRequest, session: str | None = None):
        """Stream ``DemoState``s for one uploaded or example image.

        The server sends a run as it is computed, never paced: its latest state at most every ``UPDATE_GAP``
        seconds (the stages, a regeneration frame while a long one computes) and the final state at once,
        which holds every iteration. The page plays the regeneration back from those frames itself
        (``play_regeneration`` in ism/app/tabs/attack.py, ``ISM_PLAYBACK`` seconds), so a class on one example
        costs the server one stream each, not one per frame. With a ``pool`` the run is computed in a worker process (shared with identical requests,
        cached: a cached run is its final state at once); while it waits for a worker the stream carries
        states whose ``waiting`` says the place in line. Closing the generator, or ``stop(session)``,
        leaves the run (and cancels it if nobody else follows it).
        """
        if req.defense not in (None, self.key):
            raise UserError(f"this request is for the defense {req.defense!r}, not {self.key!r}")
        req = req.but(defense=self.key)
        picture = self.prepare(req.file)
        x = picture.tensor
        label = picture.example.label if picture.example is not None else None
        every = -(-(req.iterations + 1) // MAX_FRAMES_SHOWN)       # ceil: show every k-th iteration (and the last)
        last, finished, previous, pending = None, False, DemoState(), None
        if self.pool is not None:
            try:
                states = self.pool.follow(Work(req, x, label, every, self.max_seconds))
            except Full as e:
                raise UserError(str(e)) from None
        else:
            states = run_demo(self.defense, x, label, req, self.max_seconds)
        if session:
            self._sessions[session] = states
        try:
            with self.active, contextlib.closing(states):
                for state in states:
                    now = _clock()
                    if isinstance(state, Waiting):
                        previous, last = DemoState(waiting=waiting_text(state)), now
                        yield previous, picture, label
                        continue
                    if state is not None:
                        pending = state
                    if pending is not None and (pending.done or last is None or now - last >= UPDATE_GAP):
                        previous, pending, last = pending, None, now    # the latest state, at most one every
                        yield previous, picture, label                  # UPDATE_GAP seconds; the final at once
                        finished = previous.done    # (delivered: a run left before its final update is stopped)
                    elif state is None and (last is None or now - last >= KEEP_ALIVE):
                        last = now
                        yield previous, picture, label   # (lets a generator closed meanwhile leave promptly)
        except OverCap as e:
            raise UserError(str(e)) from None
        except Stopped:   # the page already says so (Stop's own answer); a last update says the same
            if not finished:  # (unless the whole run was delivered before the Stop)
                yield DemoState(waiting="■ Stopped. Press Run to start again."), picture, label
        finally:
            if session and self._sessions.get(session) is states:
                self._sessions.pop(session, None)      # (Stop may have taken it meanwhile)
            self.active.record(finished)

    def stop(self, session: str | None) -> bool:
        """Leave the run ``session`` follows (Stop): it is cancelled unless another visitor follows it."""
        states = self._sessions.pop(session, None) if session else None
        if not isinstance(states, Follower):   # (a run computed in this thread cannot be closed from another)
            return False
        states.close()
        return True


def waiting_text(w: Waiting) -> str:
    ahead = "you are next" if w.place == 1 else f"you are number {w.place} in line"
    return (f"⏳ Waiting for a free worker: {ahead}, about {max(1, round(w.seconds))} s. "
            "Runs that other visitors already asked for are shared, so a class on one example waits less.")


@dataclass
class Comparison:
    rows: list           # compare.Row
    figure: object       # matplotlib Figure
    table: str
    summary: str

    def api(self) -> list[dict]:
        return [r.public() for r in self.rows]


class CompareHandler:
    """Compare defenses (and the guided lesson) for one data set: the same checks as the demo."""

    def __init__(self, demo: DemoHandler, weights_dir: str | Path | None = None, contenders: list | None = None,
                 loaded: dict | None = None):
        """``contenders``: those of another handler for the same data set (loaded once); ``loaded``:
        {folder: Defense} already in memory (ism/app/compare.py: ``contenders``)."""
        self.demo = demo
        self.contenders = contenders or find_contenders(demo.defense, weights_dir, loaded)
        self.memo = Memo()

    def run(self, req: RunRequest, contenders=None, threats=None) -> Comparison:
        """Attack ``req.file`` by ``req``'s attack against every contender (or ``contenders``), gray-box and
        adaptive (or ``threats``); the request's threat and regeneration settings do not apply."""
        req = req.but(threat="gray-box", restarts=1, iterations=0, read=None)
        picture = self.demo.prepare(req.file)
        x = picture.tensor
        label = picture.example.label if picture.example is not None else None
        d = self.demo.defense
        truth = d.classes[label] if label is not None else None
        if label is None:             # not a labelled example: the served classifier's reading is the reference
            with torch.no_grad():
                label = int(d.classifier(x).argmax(1)[0])
        contenders, threats = contenders or self.contenders, tuple(threats or THREATS)
        key = (hashlib.sha256(x.numpy().tobytes()).hexdigest(), label, tuple(c.name for c in contenders),
               tuple(sorted(req.computed().items())), threats)
        with self.demo.active:      # deterministic: a class pressing the same lesson step computes it once
            rows = self.memo.get(key, lambda: compare(contenders, x, label, d.classes, req, threats))
        said = summary(rows, truth or d.classes[label])
        if truth is None:
            said = ("Not a labelled example: the reference answer is the classifier's own answer on your clean "
                    "picture. " + said)
        return Comparison(rows, figure(rows, to_display(x), truth or d.classes[label]), table(rows), said)

    def lesson(self, index: int) -> tuple[Comparison, str]:
        """(result, the step's text) for lesson step ``index`` (0-based) on its preset example."""
        if not 0 <= int(index) < len(STEPS):
            raise UserError(f"the lesson has steps 1 to {len(STEPS)}")
        step = STEPS[int(index)]
        name = EXAMPLES.get(self.demo.defense.config.dataset)
        example = next((e for e in self.demo.examples if Path(e.path).stem == name), None) or self.demo.examples[0]
        result = self.run(self.demo.request(file=example.path, attack=step.attack, eps=step.eps, steps=step.steps),
                          contenders_for(step, self.contenders), step.threats)
        return result, f"### {step.title}\n{step.explain}{stand_in_note(step, self.contenders)}"
