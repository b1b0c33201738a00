"""What the Gradio app calls: adapters whose signatures mirror the UI, and nothing about layout.

Each handler validates its input and turns every bad input into ``UserError`` (app.py shows it
with gr.Error), so a visitor sees a sentence, never a stack trace, and the server keeps serving.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ism.app.demo import THREATS, DemoRequest, DemoState, run_demo
from ism.app.picture import run_picture
from ism.app.serve import ActiveRuns, ServeConfig
from ism.data.examples import EXAMPLES_DIR
from ism.data.images import ImageInputError, prepare_image, to_display
from ism.defense import Defense
from ism.folders import paper_recipe_folder, robust_trained

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
PLAYBACK_SECONDS = ServeConfig.playback   # regeneration is played back over at least this long (ISM_PLAYBACK) ...
MAX_FRAMES_SHOWN = 20     # ... in at most this many evenly spaced frames
_sleep, _clock = time.sleep, time.perf_counter   # (tests replace them with a fake clock)

# The /defend endpoint's outputs, in this order: the one place the public API's order is written
# (app.py builds its components from these names; README, tests and benchmarks index by name).
OUTPUTS = ("original", "original_top3", "perturbation", "perturbation_text", "adversarial", "adversarial_top3",
           "detector_verdict", "detector_text", "purified", "purified_top3", "regenerated", "regenerated_text",
           "frames", "final", "final_top3", "verdict", "notes", "warnings", "timings", "final_text",
           "regeneration_plot", "picture")


def output(result, name: str):
    """One named output from a /defend result (gradio_client's tuple, in ``OUTPUTS`` order)."""
    return result[OUTPUTS.index(name)]


class UserError(ValueError):
    """A message for the visitor."""


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
    """What the app serves: the defense in ``source`` (a folder or Hub repo id), or else every data
    set with a trained defense under ``weights_dir`` (CIFAR-10 first)."""
    from ism.data.datasets import DATASETS
    from ism.defense import load_defense
    from ism.hub import WeightsError

    if source:
        d = load_defense(source, revision=revision)
        d.origin = (f"folder {source}" if Path(source).is_dir() else
                    f"Hub repo {source} at revision {revision or 'main'} (cached in {d.source})")
        return {d.config.dataset: d}
    found = {}
    for name in DATASETS:
        if (Path(weights_dir) / name / "defense.json").is_file():
            found[name] = load_defense(Path(weights_dir) / name)
            found[name].origin = f"folder {Path(weights_dir) / name}"
    if not found:
        raise WeightsError(f"no trained defense under {weights_dir}/ (expected e.g. {weights_dir}/cifar10/defense.json)")
    return found


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


class DemoHandler:
    """Holds the loaded defense; one instance serves every visitor (no per-visitor state)."""

    def __init__(self, defense: Defense, dataset: str = "cifar10", max_seconds: float | None = None,
                 playback: float = PLAYBACK_SECONDS):
        self.defense, self.max_seconds, self.playback = defense, max_seconds, playback
        self.active = ActiveRuns()   # runs in progress; a cancelled run leaves it at once
        self.examples = examples(defense, dataset)
        self._labels = {_digest(e.path): e.label for e in self.examples}

    def label_of(self, path: str | None) -> int | None:
        """True label if the image is one of the shipped examples (by content), else None."""
        try:
            return self._labels.get(_digest(path)) if path else None
        except (OSError, ValueError):
            return None

    def prepare(self, path) -> tuple[torch.Tensor, str]:
        try:
            p = prepare_image(path, self.defense.image_size)
        except ImageInputError as e:
            raise UserError(str(e)) from e
        return p.tensor, p.note

    def check(self, path, attack, eps, steps, threat, restarts, iterations, seed, read=None):
        """(image tensor, preparation note, validated DemoRequest), or ``UserError`` with one sentence."""
        x, note = self.prepare(path)
        try:
            req = DemoRequest(attack=str(attack).lower(), eps=float(eps), steps=int(steps), threat=str(threat),
                              restarts=int(restarts), iterations=int(iterations), seed=as_seed(seed),
                              max_seconds=self.max_seconds, read=read or None).validate()
        except (TypeError, ValueError, OverflowError) as e:
            raise UserError(str(e)) from None
        return x, note, req

    def run(self, path, attack: str, eps: float, steps: int, threat: str, restarts: int,
            iterations: int, seed: int, read: str | None = None, playback: float | None = None):
        """Stream ``DemoState``s for one uploaded or example image.

        Regeneration is played back so a viewer can watch it converge: at most ``MAX_FRAMES_SHOWN``
        evenly spaced iterations (always the last), at a steady rate over at least ``playback``
        seconds (computing 30 iterations takes a fraction of that; a browser shown every iteration
        saw a flicker). Every iteration stays in the final state's frames. Closing the generator
        (the visitor left or pressed Stop) stops the computation at the next iteration.
        """
        x, note, req = self.check(path, attack, eps, steps, threat, restarts, iterations, seed, read)
        playback = self.playback if playback is None else playback
        label = self.label_of(path)
        every = -(-(req.iterations + 1) // MAX_FRAMES_SHOWN)       # ceil: show every k-th iteration ...
        frames = len(range(0, req.iterations + 1, every)) + (req.iterations % every > 0)   # ... and the last
        gap = playback / max(1, frames - 1)
        last, finished = None, False
        try:
            with self.active, contextlib.closing(run_demo(self.defense, x, label, req)) as states:
                for state in states:
                    finished = state.done
                    n = len(state.regeneration)
                    regenerating = n > 0 and state.final is None
                    if regenerating:
                        if (n - 1) % every and not state.regen_stop:
                            continue                            # between the frames played back
                        if last is not None:
                            _sleep(max(0.0, last + gap - _clock()))
                        last = _clock()
                    yield state, note, label
        finally:
            self.active.record(finished)


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

    def __init__(self, demo: DemoHandler, weights_dir: str | Path | None = None):
        from ism.app.compare import contenders

        self.demo = demo
        self.rivals = contenders(demo.defense, weights_dir)

    def run(self, path, attack: str, eps: float, steps: int, seed, rivals=None, threats=None) -> Comparison:
        from ism.app.compare import compare, figure, summary, table

        x, note, req = self.demo.check(path, attack, eps, steps, "gray-box", 1, 0, seed)
        label = self.demo.label_of(path)
        d = self.demo.defense
        truth = d.classes[label] if label is not None else None
        if label is None:             # not a labelled example: the hardened classifier's reading is the reference
            with torch.no_grad():
                label = int(d.classifier(x).argmax(1)[0])
        with self.demo.active:
            rows = compare(rivals or self.rivals, x, label, d.classes, req, threats or tuple(THREATS))
        said = summary(rows, truth or d.classes[label])
        if truth is None:
            said = ("Not a labelled example: the reference answer is the hardened classifier's reading of the "
                    "clean image. " + said)
        return Comparison(rows, figure(rows, to_display(x), truth or d.classes[label]), table(rows), said)

    def lesson(self, index: int) -> tuple[Comparison, str]:
        """(result, the step's text) for lesson step ``index`` (0-based) on its preset example."""
        from ism.app.lesson import EXAMPLES, STEPS, rivals_for, stand_in_note

        if not 0 <= int(index) < len(STEPS):
            raise UserError(f"the lesson has steps 1 to {len(STEPS)}")
        step = STEPS[int(index)]
        name = EXAMPLES.get(self.demo.defense.config.dataset)
        example = next((e for e in self.demo.examples if Path(e.path).stem == name), None) or self.demo.examples[0]
        result = self.run(example.path, step.attack, step.eps, step.steps, 0, rivals_for(step, self.rivals),
                          step.threats)
        return result, f"### {step.title}\n{step.explain}{stand_in_note(step, self.rivals)}"


def state_values(s: DemoState, note: str, label: int | None) -> dict:
    """{output name: value} for one streamed state; the frames gallery stays empty until the run is done."""
    regen = s.regeneration[-1] if s.regeneration else None
    values = {
        "original": s.original.image if s.original else None,
        "original_top3": s.original.top3 if s.original else None,
        "perturbation": s.perturbation.image if s.perturbation else None,
        "perturbation_text": s.perturbation.caption if s.perturbation else "",
        "adversarial": s.adversarial.image if s.adversarial else None,
        "adversarial_top3": s.adversarial.top3 if s.adversarial else None,
        "detector_verdict": ("ATTACKED" if s.detection["attacked"] else "clean") if s.detection else None,
        "detector_text": detection_text(s.detection),
        "purified": s.purified.image if s.purified else None,
        "purified_top3": s.purified.top3 if s.purified else None,
        "regenerated": regen.image if regen else None,
        "regenerated_text": (f"iteration {regen.caption} — {top3_text(regen.top3)}"
                             + (f"\n\n{s.regen_stop}" if s.regen_stop else "")) if regen else "",
        "frames": [(st.image, st.caption) for st in s.regeneration] if s.done else [],
        "final": s.final.image if s.final else None,
        "final_top3": s.final.top3 if s.final else None,
        "verdict": f"### {s.verdict}" if s.verdict else "*running…*",
        "notes": ("ℹ️ " + note if note else "") + ("" if label is not None else "\n\nℹ️ Not a labelled example: "
                                                 "the attacker targets the classifier's own prediction."),
        "warnings": "\n".join(f"- ⚠️ {w}" for w in s.warnings),
        "timings": timings_text(s),
        "final_text": s.final.caption if s.final else "",
        "regeneration_plot": regeneration_curve(s.regen_errors) if s.done and s.regen_errors else None,
        "picture": run_picture(s, s.adversarial.caption.split(":")[0] + f", L∞ {s.linf * 255:.1f}/255")
        if s.done else None,
    }
    assert tuple(values) == OUTPUTS
    return values


def attack_note(attack: str, eps: float, steps: int) -> str:
    """What the epsilon and steps settings mean for this attack (CW and DeepFool ignore epsilon)."""
    steps = int(steps)
    if attack == "cw":
        return ("**CW (L2)** looks for the *smallest* L2 perturbation that changes the answer: epsilon does not "
                f"apply. Its own settings: c = 1, κ = 0, {max(steps, 10)} Adam steps at learning rate 0.01.")
    if attack == "deepfool":
        return ("**DeepFool (L2)** steps to the nearest decision boundary and 2% past it: epsilon does not apply. "
                f"Its own settings: at most {steps} steps, overshoot 0.02.")
    units = f"ε = {eps:.4f} = {eps * 255:.1f}/255 (L∞, pixel values in [0, 1])"
    if attack == "square":
        return units + f". **Square** is black-box: it only queries the outputs, {steps * 100} queries (steps x 100)."
    return units


def curves_intro(defense: Defense) -> str:
    """The Curves tab's first line, true to what was trained for this data set."""
    root = Path(getattr(defense, "source", "") or ".")
    baselines = [n for n, sub in (("MagNet", "magnet"), ("DDSA", "ddsa"))
                 if (root / "baselines" / sub / "model.safetensors").is_file()]
    paper = paper_recipe_folder(root.parent, defense.config.dataset) / "baselines"
    elsewhere = (" (the paper's baselines MagNet and DDSA were trained for the paper's recipe on this data set, "
                 "not measured in these curves: the Compare tab attacks them)") if paper.is_dir() else \
        " (the paper's baselines MagNet and DDSA were not trained for this data set)"
    others = f", and the paper's baselines {' and '.join(baselines)}, trained here" if baselines else elsewhere
    return (f"Accuracy versus epsilon for no defense, this defense{others}; gray-box (solid: the attacker "
            "knows the classifier only) and adaptive white-box (dashed: it knows the whole defense).")


def regeneration_curve(errors: list[float]):
    """The regeneration's error (MSE against the purified image) at each iteration, as the table the page
    draws itself (gr.LinePlot). A matplotlib figure drawn on the server for it took 75 ms of every run."""
    import pandas as pd

    return pd.DataFrame({"iteration": range(len(errors)), "MSE vs purified": [float(e) for e in errors]})


def top3_text(top: dict) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in top.items())


def detection_text(det: dict | None) -> str:
    if not det:
        return ""
    verdict = "ATTACKED" if det["attacked"] else "clean"
    return (f"**{verdict}** — P(attacked) = {det['probability']:.3f} (threshold {det['threshold']:.3f}); "
            f"estimated strength ε ≈ {det['strength']:.3f} ({det['strength'] * 255:.0f}/255); "
            f"{det['seconds'] * 1000:.0f} ms")


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
    return f"""
**The defense, in a few sentences.** An adversarial attack adds a small, carefully chosen pattern to an
image so that a classifier changes its answer. The **ISM network** squeezes the image through a
{squeeze} and rebuilds it: structure survives, much of the attacker's fine pattern does not.
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
0 to 1; 8/255 is the usual "invisible" budget). *CIFAR-10 (JPEG copy)*: the offline copy used here
re-encodes CIFAR-10 as JPEG, so figures are close to, not identical with, those on the original.
"""
