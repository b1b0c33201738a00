"""What the Gradio app calls: adapters whose signatures mirror the UI, and nothing about layout.

Each handler validates its input and turns every bad input into ``UserError`` (app.py shows it
with gr.Error), so a visitor sees a sentence, never a stack trace, and the server keeps serving.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch

from ism.app.demo import THREATS, DemoRequest, DemoState, chances, run_demo, top_name
from ism.app.picture import run_picture
from ism.app.runner import Follower, Full, Memo, OverCap, Stopped, Waiting
from ism.app.serve import ActiveRuns, ServeConfig
from ism.data.examples import EXAMPLES_DIR
from ism.data.images import ImageInputError, prepare_image, to_display
from ism.defense import Defense
from ism.folders import paper_recipe_folder, robust_trained

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
PLAYBACK_SECONDS = ServeConfig.playback   # the page plays regeneration back over this long (ISM_PLAYBACK)
MAX_FRAMES_SHOWN = 20     # frames of a regeneration a worker sends while computing: at most this many, evenly spaced
UPDATE_GAP = 0.3          # a visitor's stream carries the run's latest state at most this often (the final at once)
KEEP_ALIVE = 2.0          # and, while nothing new comes, the last one again this often
_clock = time.perf_counter   # (tests replace it with a fake clock)

# The /defend endpoint's outputs, in this order: the one place the public API's order is written
# (app.py builds its components from these names; README, tests and benchmarks index by name).
OUTPUTS = ("original", "original_top3", "perturbation", "perturbation_text", "adversarial", "adversarial_top3",
           "detector_verdict", "detector_text", "purified", "purified_top3", "regenerated", "regenerated_text",
           "frames", "final", "final_top3", "verdict", "notes", "warnings", "timings", "final_text",
           "regeneration_plot", "picture")


def output(result, name: str):
    """One named output from a /defend result (gradio_client's tuple, in ``OUTPUTS`` order)."""
    return result[OUTPUTS.index(name)]


UPLOAD_NOTE = ("Your own picture has no true label here: the attacker targets the classifier's own answer on it, "
               "and the final answer is compared with that answer, never called right or wrong. The classifier can "
               "only answer one of its data set's classes, whatever the picture shows.")


OUTSIDE = "This picture does not look like"   # how the recogniser's sentence starts
# what the recogniser's sentence calls each data set's pictures, and what its classifier answers
KIND_WORDS = {"cifar10": "CIFAR-10's small photos of ten kinds of things", "celeba": "CelebA's face photos"}


def load_recogniser(defense: Defense):
    """The defense folder's data-set recogniser (``recogniser/``, from ``python -m train recogniser``), or None
    where the folder has none (an older or a Hub defense without one: uploads then get no such sentence)."""
    from ism.models.recogniser import DataSetRecogniser

    source = getattr(defense, "source", None)
    folder = Path(source) / "recogniser" if source else None
    if folder is None or not (folder / "model.safetensors").is_file():
        return None
    model = DataSetRecogniser.from_pretrained(str(folder)).eval().requires_grad_(False)
    kinds = model.config.kinds
    if defense.config.dataset not in kinds or not set(kinds) - {defense.config.dataset} <= set(KIND_WORDS):
        return None
    return model


class UserError(ValueError):
    """A message for the visitor."""


@dataclass
class RunSettings:
    """One run as the page's controls set it: the one object the handlers take. The page collects its
    controls by these names, in this order, which is also the /defend API's (ism/app/tabs/attack.py)."""
    file: str | None = None          # an example's or an uploaded picture's path
    attack: str = "pgd"              # internal name (ism.attacks.standard.ATTACKS)
    eps: float = 8 / 255
    steps: int = 10
    threat: str = "gray-box"         # a THREATS key
    restarts: int = 4
    iterations: int = 30
    seed: object = 0                 # as typed: checked by as_seed
    dataset: str | None = None       # which served defense (the page's choice; a handler serves one)
    read: str | None = None          # None: the defense's own choice (config.final_input)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class Example:
    path: str
    label: int
    name: str


def examples(defense: Defense, dataset: str = "cifar10") -> list[Example]:
    """The shipped example images (examples/<dataset>/<class>_<i>.png), labelled by file name."""
    out = []
    for p in sorted((EXAMPLES_DIR / dataset).glob("*.png")):
        cls = p.stem.rsplit("_", 1)[0]
        if cls in defense.classes:
            out.append(Example(str(p), defense.classes.index(cls), cls))
    return out


def load_defenses(source: str | None = None, revision: str | None = None,
                  weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Defense]:
    """What the app serves: the defense in ``source`` (a folder or Hub repo id), keyed by its data set, or
    else every trained defense under ``weights_dir``, keyed by its folder name: per data set the paper's
    recipe (``<dataset>-paper``, the main tab's default: it undoes more of the attacks it catches) and then
    the hardened defense (``<dataset>``), CIFAR-10 first."""
    from ism.defense import load_defense
    from ism.hub import WeightsError

    if source:
        d = load_defense(source, revision=revision)
        d.origin = (f"folder {source}" if Path(source).is_dir() else
                    f"Hub repo {source} at revision {revision or 'main'} (cached in {d.source})")
        return {d.config.dataset: d}
    found = {}
    for key in defense_keys(weights_dir):
        found[key] = load_defense(Path(weights_dir) / key)
        found[key].origin = f"folder {Path(weights_dir) / key}"
    if not found:
        raise WeightsError(f"no trained defense under {weights_dir}/ (expected e.g. {weights_dir}/cifar10/defense.json)")
    return found


def defense_keys(weights_dir: str | Path = WEIGHTS_DIR) -> list[str]:
    """The defenses under ``weights_dir`` in the order the app serves them (the first is its default): per data
    set the paper's recipe, then the hardened one, CIFAR-10 first."""
    from ism.data.datasets import DATASETS

    keys = [k for name in DATASETS for k in (paper_recipe_folder(weights_dir, name).name, name)]
    return [k for k in keys if (Path(weights_dir) / k / "defense.json").is_file()]


def is_paper_recipe(defense: Defense) -> bool:
    """Whether ``defense`` is the paper's recipe (its folder is ``<dataset>-paper``), not the hardened one."""
    return Path(getattr(defense, "source", "") or ".").name == paper_recipe_folder(".", defense.config.dataset).name


def defense_title(defense: Defense) -> str:
    """The data set and the defense, as the page names them: "CIFAR-10 · the paper's recipe"."""
    from ism.data.datasets import DATASETS

    ds = defense.config.dataset
    title = (DATASETS[ds].title if ds in DATASETS else ds).split(",")[0].split(" (")[0]   # "CIFAR-10", "CelebA"
    return f"{title} · {'the paper' + chr(39) + 's recipe' if is_paper_recipe(defense) else 'hardened'}"


# The main tab's default attack strength per data set (stated on the page). On faces PGD-10 at 8/255 fails to
# fool the classifier on 5 of the 14 gallery faces, so the default run would show no attack at all
# (benchmarks/story.py, results/story.md).
DEFAULT_EPS = {"cifar10": 8 / 255, "celeba": 16 / 255}


def default_eps(defense: Defense) -> float:
    return DEFAULT_EPS.get(defense.config.dataset, 8 / 255)


def startup_report(defenses: dict[str, Defense]) -> list[str]:
    """One line per data set: where its weights came from and what was verified (printed at start)."""
    import json

    lines = []
    for name, d in defenses.items():
        sums = Path(d.source) / "checksums.json"
        n = len(json.loads(sums.read_text())) if sums.is_file() else 0
        checked = f"sha256 of {n} files verified" if n else "no checksums recorded: files not verified"
        stale = f"; WARNING: {'; '.join(d.stale)}" if getattr(d, "stale", None) else "; components consistent"
        lines.append(f"{name}: {getattr(d, 'origin', d.source)}; {checked}{stale}")
    return lines


def _digest(path: str) -> str:
    """Of the decoded pixels, not the file: the app's image box re-saves what it is given (an example
    picked from the gallery arrives as another PNG file with the same pixels)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return hashlib.sha1(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def as_seed(value) -> int:
    """The seed field's value as an int (a float from the number box, or text from the API), or a
    ValueError a visitor can act on."""
    from ism.app.demo import MAX_SEED

    msg = f"the seed must be a whole number from 0 to {MAX_SEED}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(msg + " (it is empty)")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{msg}, got {value!r}") from None
    if not f.is_integer() or not 0 <= f <= MAX_SEED:
        raise ValueError(f"{msg}, got {value!r}")
    return int(f)


class Picture(NamedTuple):
    """A visitor's picture as the models see it (``DemoHandler.prepare``)."""
    tensor: torch.Tensor
    note: str = ""       # how it was prepared (cropped, resized), or ""
    outside: str = ""    # one sentence when it does not look like the served data set, or ""

    def notes(self) -> str:
        return "\n\n".join(n for n in (self.outside, self.note) if n)


class DemoHandler:
    """Holds the loaded defense; one instance serves every visitor (no per-visitor state)."""

    def __init__(self, defense: Defense, dataset: str = "cifar10", max_seconds: float | None = None,
                 playback: float = PLAYBACK_SECONDS, pool=None):
        self.defense, self.max_seconds, self.playback = defense, max_seconds, playback
        self.dataset = dataset
        self.pool = pool             # a RunPool (ism/app/runner.py): runs computed in worker processes; None: here
        self.active = ActiveRuns()   # runs in progress; a cancelled run leaves it at once
        self.examples = examples(defense, defense.config.dataset)
        self._labels = {_digest(e.path): e.label for e in self.examples}
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

    def label_of(self, path: str | None) -> int | None:
        """True label if the image is one of the shipped examples (by content), else None."""
        try:
            return self._labels.get(_digest(path)) if path else None
        except (OSError, ValueError):
            return None

    def prepare(self, path) -> Picture:
        """The picture as the models see it, with a note on its preparation and, for a picture that is not an
        example, whether it is outside the data set."""
        try:
            p = prepare_image(path, self.defense.image_size)
        except ImageInputError as e:
            raise UserError(str(e)) from e
        return Picture(p.tensor, p.note, self.outside(p.tensor) if self.label_of(path) is None else "")

    def check(self, s: RunSettings) -> tuple[Picture, DemoRequest]:
        """(the prepared picture, a validated DemoRequest), or ``UserError`` with one sentence."""
        picture = self.prepare(s.file)
        try:
            req = DemoRequest(attack=str(s.attack).lower(), eps=float(s.eps), steps=int(s.steps), threat=str(s.threat),
                              restarts=int(s.restarts), iterations=int(s.iterations), seed=as_seed(s.seed),
                              max_seconds=self.max_seconds, read=s.read or None).validate()
        except (TypeError, ValueError, OverflowError) as e:
            raise UserError(str(e)) from None
        return picture, req

    def run(self, s: RunSettings, playback: float | None = None, session: str | None = None):
        """Stream ``DemoState``s for one uploaded or example image.

        The server sends a run as it is computed, never paced: its latest state at most every ``UPDATE_GAP``
        seconds (the stages, a regeneration frame while a long one computes) and the final state at once,
        which holds every iteration. The page plays the regeneration back from those frames itself
        (``play_regeneration`` in ism/app/tabs/attack.py, ``ISM_PLAYBACK`` seconds), so a class on one example
        costs the server one stream each, not one per frame. With a ``pool`` the run is computed in a worker process (shared with identical requests,
        cached: a cached run is its final state at once); while it waits for a worker the stream carries
        states whose ``waiting`` says the place in line. Closing the generator, or ``stop(session)``,
        leaves the run (and cancels it if nobody else follows it). (``playback`` is kept for callers; the
        server does not wait for it.)
        """
        picture, req = self.check(s)
        x = picture.tensor
        label = self.label_of(s.file)
        every = -(-(req.iterations + 1) // MAX_FRAMES_SHOWN)       # ceil: show every k-th iteration (and the last)
        last, finished, previous, pending = None, False, DemoState(), None
        if self.pool is not None:
            try:
                states = self.pool.follow(self.dataset, x, label, req, every)
            except Full as e:
                raise UserError(str(e)) from None
        else:
            states = run_demo(self.defense, x, label, req)
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
                yield DemoState(waiting="⏹ Stopped. Press Run to start again."), picture, label
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

    def __init__(self, demo: DemoHandler, weights_dir: str | Path | None = None, rivals: list | None = None,
                 loaded: dict | None = None):
        """``rivals``: the contenders of another handler for the same data set (loaded once); ``loaded``:
        {folder: Defense} already in memory (``contenders``)."""
        from ism.app.compare import contenders

        self.demo = demo
        self.rivals = rivals or contenders(demo.defense, weights_dir, loaded)
        self.memo = Memo()

    def run(self, s: RunSettings, rivals=None, threats=None) -> Comparison:
        """Attack ``s.file`` by ``s``'s attack against every rival (or ``rivals``), gray-box and adaptive
        (or ``threats``); the run's threat and regeneration settings do not apply."""
        from ism.app.compare import compare, figure, summary, table

        picture, req = self.demo.check(RunSettings(s.file, s.attack, s.eps, s.steps, "gray-box", 1, 0, s.seed))
        x = picture.tensor
        label = self.demo.label_of(s.file)
        d = self.demo.defense
        truth = d.classes[label] if label is not None else None
        if label is None:             # not a labelled example: the served classifier's reading is the reference
            with torch.no_grad():
                label = int(d.classifier(x).argmax(1)[0])
        rivals, threats = rivals or self.rivals, tuple(threats or THREATS)
        key = (hashlib.sha256(x.numpy().tobytes()).hexdigest(), label, tuple(r.name for r in rivals),
               tuple(sorted(asdict(req).items())), threats)
        with self.demo.active:      # deterministic: a class pressing the same lesson step computes it once
            rows = self.memo.get(key, lambda: compare(rivals, x, label, d.classes, req, threats))
        said = summary(rows, truth or d.classes[label])
        if truth is None:
            said = ("Not a labelled example: the reference answer is the classifier's own answer on your clean "
                    "picture. " + said)
        return Comparison(rows, figure(rows, to_display(x), truth or d.classes[label]), table(rows), said)

    def lesson(self, index: int) -> tuple[Comparison, str]:
        """(result, the step's text) for lesson step ``index`` (0-based) on its preset example."""
        from ism.app.lesson import EXAMPLES, STEPS, rivals_for, stand_in_note

        if not 0 <= int(index) < len(STEPS):
            raise UserError(f"the lesson has steps 1 to {len(STEPS)}")
        step = STEPS[int(index)]
        name = EXAMPLES.get(self.demo.defense.config.dataset)
        example = next((e for e in self.demo.examples if Path(e.path).stem == name), None) or self.demo.examples[0]
        result = self.run(RunSettings(example.path, step.attack, step.eps, step.steps, seed=0),
                          rivals_for(step, self.rivals), step.threats)
        return result, f"### {step.title}\n{step.explain}{stand_in_note(step, self.rivals)}"


def png_file(image) -> str | None:
    """``image`` (H x W x 3 uint8) as a PNG file in gradio's cache folder, named by its content (gradio's own
    layout) and written under a temporary name then renamed into place. Gradio writes an image output in
    place at its content's path, so concurrent runs of one example rewrote a file while it was being served
    (h11 "Too little/much data for declared Content-Length"); a file here is never rewritten."""
    if image is None:
        return None
    import io
    import uuid

    from gradio.processing_utils import hash_bytes
    from gradio.utils import get_upload_folder
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)   # (a third faster than 6; files 10% larger)
    data = buf.getvalue()
    folder = Path(get_upload_folder()) / hash_bytes(data)
    path = folder / "image.png"
    if _handed_out(str(path)):      # handed out again: not deleted on its first use's schedule
        return str(path)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return str(path)


def stage_file(stage) -> str:
    """A stage's image as a PNG file, encoded once: the same file for every state and visitor of a run (a run
    computed in a worker shares its stages between its states, ism/app/runner.py), made again only if the
    server's clean-up deleted it."""
    if stage.file is None or not _handed_out(stage.file):
        stage.file = png_file(stage.image)
    return stage.file


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
        if made and all([_handed_out(f) for f in (made["picture"], *(f for f, _ in made["frames"]))]):
            return made
        made = {"frames": [(stage_file(st), frame_caption(st)) for st in s.regeneration],
                "picture": png_file(run_picture(s, s.adversarial.caption.split(":")[0]
                                                + f", L∞ {s.linf * 255:.1f}/255")),
                "plot": regeneration_curve(s.regen_errors) if s.regen_errors else None}
        s.rendered["made"] = made
        return made


def state_values(s: DemoState, picture: Picture, label: int | None) -> dict:
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
        "regenerated_text": (f"iteration {regen.caption} (mean squared difference). The classifier reads "
                             f"{top3_text(regen.top3)}"
                             + (f"\n\n{s.regen_stop}" if s.regen_stop else "")) if regen else "",
        "frames": done.get("frames", []),
        "final": img(s.final) if s.final else None,
        "final_top3": s.final.top3 if s.final else None,
        "verdict": (f"### {s.headline}\n\n" + (f"⚠️ {picture.outside}\n\n" if picture.outside else "")
                    + f"<details><summary>What happened, step by step</summary>\n\n{s.verdict}"
                    "\n\n</details>") if s.verdict else f"*{s.waiting or 'running…'}*",
        "notes": (f"ℹ️ {picture.note}" if picture.note else "") + ("" if label is not None else "\n\nℹ️ " + UPLOAD_NOTE),
        "warnings": "\n".join(f"- ⚠️ {w}" for w in s.warnings),
        "timings": timings_text(s),
        "final_text": s.final.caption if s.final else "",
        "regeneration_plot": done.get("plot"),
        "picture": done.get("picture"),
    }
    assert tuple(values) == OUTPUTS
    return values


def attack_note(attack: str, eps: float, steps: int) -> str:
    """What the epsilon and steps settings mean for this attack (CW and DeepFool ignore epsilon), with this
    server's ceiling on the attack's work."""
    from ism.app.demo import MAX_STEPS

    steps = int(steps)
    if attack == "cw":
        return ("**CW (L2)** looks for the *smallest* L2 perturbation that changes the answer: epsilon does not "
                f"apply. Its own settings: c = 1, κ = 0, {max(steps, 10)} Adam steps at learning rate 0.01 (at most "
                f"{MAX_STEPS} per run on this server).")
    if attack == "deepfool":
        return ("**DeepFool (L2)** steps to the nearest decision boundary and 2% past it: epsilon does not apply. "
                f"Its own settings: at most {steps} steps, overshoot 0.02.")
    units = f"ε = {eps:.4f} = {eps * 255:.1f}/255 (L∞, pixel values in [0, 1])"
    if attack == "square":
        from ism.app.demo import MAX_SQUARE_QUERIES, attack_steps

        return units + (f". **Square** is black-box: it only queries the outputs, {attack_steps(attack, steps) * 100:,} "
                        f"queries (steps x 100; at most {MAX_SQUARE_QUERIES:,} per run on this server).")
    return units


def curves_intro(defense: Defense) -> str:
    """The Curves tab's first line, true to what was trained for this data set."""
    root = Path(getattr(defense, "source", "") or ".")
    baselines = [n for n, sub in (("MagNet", "magnet"), ("DDSA", "ddsa"))
                 if (root / "baselines" / sub / "model.safetensors").is_file()]
    ds = defense.config.dataset
    beside = [f for f in (paper_recipe_folder(root.parent, ds), root.parent / ds) if f.resolve() != root.resolve()]
    elsewhere = (" (the paper's baselines MagNet and DDSA were trained beside the other defense for this data set, "
                 "not measured in these curves: the Compare tab attacks them)") \
        if any((f / "baselines").is_dir() for f in beside) else \
        " (the paper's baselines MagNet and DDSA were not trained for this data set)"
    others = f", and the paper's baselines {' and '.join(baselines)}, trained here" if baselines else elsewhere
    return (f"Accuracy versus epsilon for no defense, this defense{others}; gray-box (solid: the attacker "
            "knows the classifier only) and adaptive white-box (dashed: it knows the whole defense).")


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


def detection_text(det: dict | None) -> str:
    if not det:
        return ""
    verdict = "ATTACKED" if det["attacked"] else "clean"
    p, t = chances(det["probability"], det["threshold"])
    return (f"**{verdict}**: chance it was attacked {p} (it says attacked above {t}). Its guess of the attack's "
            f"strength: about {det['strength'] * 255:.0f}/255.")


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


def limits_text(max_seconds: float | None) -> str:
    """This server's ceilings on one run, in words (shown beside the settings)."""
    from ism.app.demo import MAX_REGEN_BUDGET, MAX_SQUARE_QUERIES

    cap = f"; a run stops regenerating after {max_seconds:g} s" if max_seconds else ""
    return (f"Limits per run on this server, so that every visitor gets a turn: Square at most "
            f"{MAX_SQUARE_QUERIES:,} queries; regeneration restarts × iterations at most {MAX_REGEN_BUDGET:,}{cap}.")


def threat_help() -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in THREATS.items())


def how_text(defense: Defense) -> str:
    """The 'how it works' text, true to the loaded defense's configuration."""
    c = defense.config
    gate = ("Inputs judged clean go straight to the classifier; inputs judged attacked are purified."
            if c.gate else
            "Every input is purified: the detector reports, it does not decide. (With a gate, an adaptive "
            "attacker stays just below the detector's threshold and attacks the bare classifier; on held-out "
            "data the ungated pipeline held up better, see `defense.json`.)")
    final = {"purified": "the classifier reads the **ISM output**, because on held-out data it read that better "
                         "than the regenerated image; regeneration is shown so you can watch it work",
             "regenerated": "the classifier reads the **regenerated** image",
             "mean": "the classifier reads the mean of the ISM output and the regenerated image"}[c.final_input]
    source = getattr(defense, "source", None)
    paper_clf = defense.classifier.config.arch == "table1"
    first = ("The classifier was first hardened as the paper says (defensive\n"
             "distillation + adversarial training)." if paper_clf else
             "The classifier is not the paper's Table 1 network but a compute-efficient one (shaped like\n"
             "airbench94) trained with FGSM adversarial training alone, which in the same CPU time reads clean and\n"
             "attacked images far better; the paper's recipe is kept as `weights/cifar10-paper`.")
    if source is not None and robust_trained(source):
        hardened = (f"**How it was hardened.** {first} Against an attacker who differentiates through the ISM that\n"
                    "was not enough, so ISM and classifier were then trained together against PGD that goes through the\n"
                    "ISM (`python -m train robust`), keeping the ISM a reconstruction of its input.")
    else:
        hardened = (f"**How it was hardened.** {first} The ISM was *not* adversarially trained with the\n"
                    "classifier for these weights, so an attacker who differentiates through the ISM breaks it\n"
                    "(see the adaptive white-box setting).")
    detail = defense.ism.config.detail_channels
    squeeze = ("128-number code" if not detail else
               f"128-number code plus a coarse {detail}-channel detail map at a quarter of the resolution")
    rebuilt = "structure survives, much of the attacker's fine pattern does not."
    if getattr(defense.ism.config, "refine_width", 0):
        rebuilt = ("that rebuilt image is blurry, so a **refiner** (a small full-resolution network) then compares\n"
                   "it with the input and takes the attacker's pattern out of the input itself. It was trained on many\n"
                   "attacked images to make the classifier read its output as it reads the clean image, and on clean\n"
                   "images to leave them as they are.")
    return f"""
**The defense, in a few sentences.** An adversarial attack adds a small, carefully chosen pattern to an
image so that a classifier changes its answer. The **ISM network** squeezes the image through a
{squeeze} and rebuilds it: {rebuilt}
The **detector** looks at what the ISM removed, *x − ISM(x)*: attacked images leave a tell-tale
residue, and it estimates how strong the attack was. {gate} **Regeneration** then searches a GAN
generator's latent space, step by step, for an image that matches the purified one; {final}.

{hardened}

**What it does not promise.** Against the paper's *gray-box* attacker, who does not know the
defense, purification helps a lot. Against an *adaptive* attacker, who differentiates through the
ISM and approximates the regeneration loop (BPDA, EOT), purifier defenses are known to lose most
of that (Athalye et al., 2018). The "adaptive white-box" setting and the robustness curves show by
how much, next to the baselines MagNet and DDSA.

**Words used here.** *Gray-box*: the attacker knows the classifier's weights but not the defense
(the paper's setting). *Adaptive white-box*: the attacker knows the whole defense and attacks
through it. *BPDA* (backward-pass differentiable approximation): the attacker treats a step it
cannot differentiate, here the regeneration search, as "output = input" when computing gradients.
*EOT* (expectation over transformation): against a randomised step, the attacker averages
gradients over several random draws. *ε*: the largest change allowed to any pixel (pixels run from
0 to 1; 8/255 is the usual "invisible" budget). *PGD* (projected gradient descent): the standard attack, many
small steps that each push the classifier's answer away from the right one, kept within ε; PGD-10 takes 10.
*FGSM*: one such step. *L∞ / L2*: the largest change to any one pixel / the overall size of the change.
*ISM* (Instance Sparsity Mapping network): the paper's purifier, which rebuilds the picture from a short code
(128 numbers) meant to keep what it shows and drop the attack (CIFAR-10's paper recipe then corrects that rebuilt
picture with a refiner that also reads the input). *GAN* (generative adversarial network): a
generator trained to draw pictures like the data set's; regeneration searches for the drawing closest to the
purified picture. *Mean squared difference*: the average, over pixels, of the squared difference between two
pictures. *CIFAR-10 (JPEG copy)*: the offline copy used here
re-encodes CIFAR-10 as JPEG, so figures are close to, not identical with, those on the original.
"""


# --- a link to one exact run (the settings in the page's query string) -------------------------------
LINK_THREATS = {"gray-box": "gray-box", "adaptive": "adaptive white-box"}


def share_query(handler: DemoHandler, s: RunSettings, run: bool = True) -> str:
    """The query string of a link that opens this exact run (``?dataset=…&example=…&…``), or ``UserError``
    for a picture that is not a shipped example: uploaded pictures are never put in links."""
    label = handler.label_of(s.file)
    example = next((e for e in handler.examples if label is not None and _digest(e.path) == _digest(s.file)), None)
    if example is None:
        raise UserError("Only the example pictures can be shared in a link (an uploaded picture stays on your "
                        "computer): pick an example to share a run.")
    threat = s.threat
    threat_key = next(k for k, v in LINK_THREATS.items() if v == threat) if threat in LINK_THREATS.values() else threat
    from urllib.parse import urlencode

    q = {"dataset": handler.dataset, "example": Path(example.path).stem, "attack": s.attack,
         "eps": f"{float(s.eps):.6g}", "steps": int(s.steps), "threat": threat_key, "seed": as_seed(s.seed)}
    if run:
        q["run"] = 1
    return "?" + urlencode(q)


@dataclass
class Link:
    """The settings a link asks for (None: keep the page's)."""
    dataset: str
    example: str | None = None       # the example's file path
    attack: str | None = None        # internal name (pgd)
    eps: float | None = None
    steps: int | None = None
    threat: str | None = None        # THREATS key
    seed: int | None = None
    run: bool = False


def parse_link(params, handlers: dict) -> Link | None:
    """The run a page's query parameters describe, checked; None when there are none; ``UserError`` with
    one sentence for a link that names something this server does not have."""
    from ism.app.demo import ATTACKS, MAX_EPS, MAX_STEPS

    params = {k: str(v) for k, v in dict(params or {}).items()}
    if not any(k in params for k in ("dataset", "example", "attack", "eps", "steps", "threat", "seed")):
        return None
    dataset = params.get("dataset") or next(iter(handlers))
    if dataset not in handlers:
        raise UserError(f"This link names the data set {dataset!r}, which this server does not have "
                        f"({', '.join(handlers)}).")
    h, link = handlers[dataset], Link(dataset)
    if "example" in params:
        ex = next((e for e in h.examples if Path(e.path).stem == params["example"]), None)
        if ex is None:
            raise UserError(f"This link names the example {params['example']!r}, which is not among the "
                            f"{dataset} examples.")
        link.example = ex.path
    try:
        if "attack" in params:
            if params["attack"].lower() not in ATTACKS:
                raise ValueError(f"the attack {params['attack']!r} is not one of {', '.join(ATTACKS)}")
            link.attack = params["attack"].lower()
        if "eps" in params:
            from ism.attacks.standard import parse_eps

            link.eps = parse_eps(params["eps"])
            if not 0 <= link.eps <= MAX_EPS:
                raise ValueError(f"epsilon must lie in [0, {MAX_EPS}]")
        if "steps" in params:
            link.steps = int(params["steps"])
            if not 1 <= link.steps <= min(MAX_STEPS, 50):
                raise ValueError("attack steps must lie in [1, 50]")
        if "threat" in params:
            if params["threat"] not in LINK_THREATS:
                raise ValueError(f"the threat model must be {' or '.join(LINK_THREATS)}")
            link.threat = LINK_THREATS[params["threat"]]
        if "seed" in params:
            link.seed = as_seed(params["seed"])
    except ValueError as e:
        raise UserError(f"This link's settings cannot be used: {e}.") from None
    link.run = params.get("run") == "1" and link.example is not None
    return link
