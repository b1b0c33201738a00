"""One demonstration, stage by stage: attack an image and watch the defense catch and undo it.

``run_demo`` is a generator of ``DemoState`` snapshots, each a little more complete (the
regeneration stage adds one snapshot per iteration), so a UI can stream it. Everything the app
shows comes from here; ``app.py`` only maps states to widgets.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from ism.app.request import RunRequest
from ism.attacks.adaptive import AdaptiveTarget, make_adaptive_attack
from ism.attacks.standard import MAX_SQUARE_QUERIES, MAX_STEPS, make_attack, seeded
from ism.attacks.standard import attack as attack_spec
from ism.data.images import to_display
from ism.defense import Defense


@dataclass
class Stage:
    image: np.ndarray             # H x W x 3 uint8, for display
    probs: dict | Callable[[], dict]   # class name -> probability (top 3), or what computes it when first read
    seconds: float
    caption: str = ""
    file: str | None = field(default=None, compare=False, repr=False)   # the image encoded for the page, once
                                                                         # (ism/app/render.py: stage_file)

    @property
    def top3(self) -> dict:
        """The top-3 reading. Regeneration frames compute it when first read: the app plays back only
        some iterations (ism/app/render.py), so most never need a pass through the classifier."""
        if callable(self.probs):
            self.probs = self.probs()
        return self.probs


@dataclass
class DemoState:
    original: Stage | None = None
    perturbation: Stage | None = None
    adversarial: Stage | None = None
    detection: dict | None = None        # probability, attacked, strength, threshold, seconds
    purified: Stage | None = None
    counter: Stage | None = None         # the ISM's change to the attacked picture, on panel 2's scale
    counter_linf: float = 0.0            # its size: the largest change to one pixel
    regeneration: list = field(default_factory=list)   # list[Stage], one per iteration
    final: Stage | None = None
    verdict: str = ""                    # what happened, sentence by sentence
    headline: str = ""                   # the same in one line a class can read aloud (``headline``)
    warnings: list = field(default_factory=list)
    target: str = "the classifier"       # what the attacker attacked (panel 3 shows what it reads)
    target_clean: dict | None = None     # the target's top-3 on the clean image
    linf: float = 0.0                    # size of the perturbation actually applied
    regen_errors: list = field(default_factory=list)   # mean MSE against the target, per iteration
    regen_stop: str = ""                 # why regeneration stopped, in words
    done: bool = False
    waiting: str = ""                    # before the run starts: the visitor's place in line, in words
    rendered: dict = field(default_factory=dict, compare=False, repr=False)   # what the page made of this state
                                         # once (the frames gallery, the slide picture): every visitor of it shares it


def top3(defense: Defense, x: torch.Tensor, model=None) -> dict:
    """Top-3 probabilities of ``model`` (default the classifier) on image ``x``."""
    with torch.no_grad():
        p = (model or defense.classifier)(x).float().softmax(1)[0]
    return _top3_of(defense.classes, p)


def _top3_of(classes: list, p: torch.Tensor) -> dict:
    """{class name: probability} of the three most probable classes of one probability row ``p``."""
    v, i = p.topk(min(3, len(p)))
    return {classes[k]: float(s) for s, k in zip(v.tolist(), i.tolist())}


def top_name(probs: dict) -> str:
    """The most probable class of a top-3 reading."""
    return max(probs, key=probs.get)


def _read_frames(defense: Defense, frames: list, images: list) -> None:
    """Every regeneration frame's top-3 reading, in one batched pass (the frames gallery captions each
    iteration with it); frames already read while streaming keep theirs."""
    todo = [i for i, st in enumerate(frames) if callable(st.probs)]
    if not todo:
        return
    with torch.no_grad():
        p = defense.classifier(torch.cat([images[i] for i in todo])).float().softmax(1)
    for i, row in zip(todo, p):
        frames[i].probs = _top3_of(defense.classes, row)


def _stage(defense, x, t0, caption="") -> Stage:
    return Stage(to_display(x), top3(defense, x), time.perf_counter() - t0, caption)


def _input_gradient_is_zero(defense: Defense, x: torch.Tensor, label: torch.Tensor) -> bool:
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(defense.classifier(x), label)
    (g,) = torch.autograd.grad(loss, x)
    return bool(g.abs().max() == 0)


def no_attack(req: RunRequest) -> bool:
    """Epsilon 0 on an attack that epsilon bounds: the picture is left as it is."""
    return req.eps == 0 and attack_spec(req.attack).uses_eps


def attack_image(defense: Defense, x: torch.Tensor, y: torch.Tensor, req: RunRequest, target=None) -> torch.Tensor:
    """``x`` attacked as ``req`` says: gray-box against the classifier alone (or ``target``, a model that stands
    for it), adaptive white-box against the whole defense (PGD: BPDA + EOT; the others through
    ``AdaptiveTarget``). Seeded, in [0, 1]."""
    steps = attack_spec(req.attack).run_steps(req.steps)
    with seeded(req.seed):
        if no_attack(req):
            x_adv = x.clone()
        elif target is not None or req.threat == "gray-box":
            x_adv = make_attack(req.attack, target or defense.classifier, req.eps, steps, seed=req.seed)(x, y)
        elif req.attack == "pgd":
            x_adv = make_adaptive_attack(defense, req.eps, steps, eot_iter=2, seed=req.seed)(x, y)
        else:
            x_adv = make_attack(req.attack, AdaptiveTarget(defense, req.seed), req.eps, steps, seed=req.seed)(x, y)
    return x_adv.detach().clamp(0, 1)


def check_cap(max_seconds: float | None) -> None:
    """A server's cap on a run's seconds is positive (or None: no cap), else a ValueError."""
    if max_seconds is not None and not float(max_seconds) > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")


def run_demo(defense: Defense, x: torch.Tensor, label: int | None, req: RunRequest, max_seconds: float | None = None):
    """Yield ``DemoState``s for one image ``x`` (1, C, H, W) in [0, 1].

    ``label`` is the true class when known (examples); otherwise the classifier's own prediction
    on the clean image is what the attacker tries to change. ``max_seconds``: this server stops regenerating
    after so long (its per-run cap; None: never).
    """
    check_cap(max_seconds)
    x = defense._check(x, "image")
    if len(x) != 1:
        raise ValueError("run_demo takes exactly one image")
    s = DemoState()
    t = t_start = time.perf_counter()
    s.original = _stage(defense, x, t, "the input")
    y = torch.tensor([label if label is not None else int(defense.classifier(x).argmax(1))])
    yield s

    # attack
    t = time.perf_counter()
    x_adv = attack_image(defense, x, y, req)
    dt = time.perf_counter() - t
    delta = x_adv - x
    linf, l2 = float(delta.abs().max()), float(delta.flatten().norm())
    amp = 0.5 + delta / (2 * max(linf, 1e-8))
    s.perturbation = Stage(to_display(amp), {}, dt, f"It changes each pixel by at most {of_255(linf)} of 255 "
                           "steps of brightness; shown here made strong enough to see.\n\n<details><summary>in "
                           f"numbers</summary>\n\nL∞ = {linf:.4f} (the largest change to one pixel, pixels in [0, 1]); "
                           f"overall size L2 = {l2:.2f}.\n\n</details>")
    s.linf = linf
    if req.threat == "gray-box":
        s.target, model = "the classifier alone (the attacker does not know the defense)", None
        s.target_clean = s.original.top3
    else:
        s.target, model = "the whole defense (detector, ISM and classifier)", AdaptiveTarget(defense, req.seed)
        s.target_clean = top3(defense, x, model)
    s.adversarial = Stage(to_display(x_adv), top3(defense, x_adv, model), dt,
                          f"{req.attack.upper()}, {req.threat}: what {s.target.split(' (')[0]} reads")
    if attack_spec(req.attack).run_steps(req.steps) < req.steps:
        s.warnings.append(f"Square asked for {req.steps * 100:,} queries; this server stops it at "
                          f"{MAX_SQUARE_QUERIES:,} per run so that every visitor gets a turn.")
    if req.threat == "gray-box" and _input_gradient_is_zero(defense, x, y):
        s.warnings.append("The classifier's input gradient is exactly zero here: gradient-based attacks "
                          "cannot move this image, and robustness measured this way is gradient masking.")
    yield s

    # detection and purification
    t = time.perf_counter()
    with torch.no_grad():
        ism_out = defense.ism(x_adv)
        det = defense.detection(x_adv, ism_out)
        purified = defense.purified(x_adv, ism_out)
    s.detection = {"probability": float(det.probability), "attacked": bool(det.attacked),
                   "strength": float(det.strength), "threshold": defense.threshold,
                   "gate": bool(defense.config.gate), "seconds": time.perf_counter() - t}
    t = time.perf_counter()
    s.purified = _stage(defense, purified, t, "ISM(x')")
    s.counter, s.counter_linf = counter_change(purified - x_adv, linf)
    yield s

    # regeneration, streamed
    t = time.perf_counter()
    last, frame_images = None, []
    with torch.no_grad():   # the picture the defense reads, which regeneration redraws (not computed again there)
        target = defense.coarse_read(x_adv, purified, det.strength)
    for step in defense.regenerate_steps(x_adv, steps=req.iterations, restarts=req.restarts, seed=req.seed,
                                         image=target):
        last = step
        frame_images.append(step.image)
        err = float(step.error.mean())
        s.regeneration.append(Stage(to_display(step.image), partial(top3, defense, step.image),
                                    time.perf_counter() - t,
                                    f"{step.step}: {err:.4f} from panel 5"))
        s.regen_errors.append(err)
        if step.done:
            s.regen_stop = "Regeneration " + step.reason + "."
        yield s
        if max_seconds is not None and time.perf_counter() - t_start > max_seconds and not step.done:
            s.regen_stop = (f"Regeneration stopped at iteration {step.step} of {req.iterations}: this server caps a "
                            f"run at {max_seconds:g} s so every visitor gets a turn.")
            s.warnings.append(s.regen_stop)
            break
    blur = defense.on_blur(det)       # read on the blur (as ``read``): regeneration redrew that picture
    if blur is not None and bool(blur[0]):
        s.regen_stop = (f"{s.regen_stop or ''} It redrew the ISM's rebuilt (blurry) picture, not panel 5: for an attack "
                        "this strong that is the picture the defense reads.").strip()
    _read_frames(defense, s.regeneration, frame_images)
    if (req.read or defense.config.final_input) != "purified":
        s.warnings.append("The defense is randomised (regeneration's random restarts): a fair attack "
                          "averages over them (EOT); compare the two threat models.")
        s.warnings.append("The defense optimises at inference (regeneration loop): its gradient is not "
                          "the attack's gradient, so gray-box numbers overstate robustness; BPDA attacks it.")

    # final decision
    t = time.perf_counter()
    gated = defense.config.gate
    head = ("judged attacked" if det.attacked else "judged clean") if gated else "every input is purified"
    with torch.no_grad():
        read = defense.read(x_adv, final_input=req.read, regenerated=last.image if last is not None else None)
    final, source = read.image, read.source[0]
    own = {"purified": "the purified picture", "regenerated": "the redrawn picture", "mean": "their average"}
    chosen = "" if req.read in (None, defense.config.final_input) else \
        f" (your choice; this defense reads {own[defense.config.final_input]})"
    why = {"input": "the detector judged it clean: the classifier reads the input as it is (let through)",
           "purified": f"{head}: the classifier reads panel 5, the purified picture{chosen}",
           "regenerated": f"{head}: the classifier reads panel 6, the redrawn picture{chosen}",
           "mean": f"{head}: the classifier reads the average of panels 5 and 6{chosen}"}[source]
    if read.coarse is not None and bool(read.coarse[0]):
        reads = {"purified": "the ISM's rebuilt (blurry) image", "regenerated": "the GAN's redrawing of the ISM's "
                 "rebuilt (blurry) image", "mean": "the average of the ISM's rebuilt (blurry) image and its redrawing"}
        why = (f"{head}: the detector estimated a strong attack (about {float(det.strength) * 255:.0f}/255), so the "
               f"classifier reads {reads[source]}, which a perturbation that large does not survive")
    s.final = _stage(defense, final, t, why)
    s.verdict = verdict(defense, int(y), s, req, label_known=label is not None)
    s.headline = headline(defense, int(y), s, req, label_known=label is not None)
    s.done = True
    yield s


def of_255(value: float) -> str:
    """A change in [0, 1] as steps of brightness out of 255, in words: "16", "76.5" (no ".0" for a whole step)."""
    return f"{value * 255:.1f}".removesuffix(".0")


def counter_change(change: torch.Tensor, attack_linf: float) -> tuple[Stage, float]:
    """The ISM's change to the picture it was given (purified - attacked), drawn on panel 2's scale (the attack's
    largest change is full contrast; larger changes saturate), with its size in words beside the attack's."""
    c = float(change.abs().max())
    scale = max(attack_linf if attack_linf > 0 else c, 1e-8)
    image = to_display((0.5 + change / (2 * scale)).clamp(0, 1))
    words = f"The ISM's change to panel 3, drawn like panel 2: at most {of_255(c)} of 255 per pixel"
    if attack_linf > 0:
        words += f" (the attack's: {of_255(attack_linf)})"
        if c > 2 * attack_linf:
            words += ". Far larger than the attack: it redraws the picture rather than answering the attack"
    return Stage(image, {}, 0.0, words + "."), c


def chances(p: float, threshold: float) -> tuple[str, str]:
    """The detector's probability and its threshold in words: never "100%" or "0%", a threshold of 0.006 not
    rounded to "1%", and one more decimal where the two would read the same ("45.3% … above 45.0%")."""
    def say(v: float, digits: int) -> str:
        return "over 99%" if v > 0.99 else "under 0.1%" if v < 0.001 else f"{v:.{digits}%}"
    digits = 1 if min(p, threshold) < 0.1 else 0
    while say(p, digits) == say(threshold, digits) and p != threshold and digits < 3:
        digits += 1
    return say(p, digits), say(threshold, digits)


def headline(defense: Defense, y: int, s: DemoState, req: RunRequest, label_known: bool = True) -> str:
    """The run in one line of three steps: what the attack did → what the detector did → what the defense
    answered ("Fooled the classifier → caught → answered right again: airplane"). An upload has no true
    label: its answer is compared with the classifier's own answer on the clean picture, never right or wrong."""
    truth, fin, clean = defense.classes[y], top_name(s.final.top3), top_name(s.original.top3)
    who = "the classifier" if req.threat == "gray-box" else "the whole defense"
    fooled = False
    if no_attack(req):
        attack = "No attack (ε = 0)"
    elif s.linf == 0:
        attack = "The attack changed nothing"
    else:
        fooled = top_name(s.adversarial.top3) != top_name(s.target_clean)
        attack = f"Fooled {who}" if fooled else f"Did not fool {who}"
    flagged = bool(s.detection["attacked"])
    detector = ("caught" if flagged else "missed") if s.linf > 0 else ("flagged as attacked" if flagged else "judged clean")
    if label_known:
        answer = (f"answered right{' again' if fooled and clean == truth else ''}: {fin}" if fin == truth else
                  f"answered wrong: {fin} (true: {truth})")
    else:
        answer = (f"answered {fin}, as on your clean picture" if fin == truth else
                  f"answered {fin} (on your clean picture: {truth})")
    return f"{attack} → {detector} → {answer}"


def verdict(defense: Defense, y: int, s: DemoState, req: RunRequest, label_known: bool = True) -> str:
    """What happened, in plain words, true for either threat model: what the attacker targeted and
    whether it fooled that target, what the detector did, and what the defense finally said."""
    truth, clean, fin = defense.classes[y], top_name(s.original.top3), top_name(s.final.top3)
    parts = []
    if label_known and clean != truth:
        parts.append(f"Before any attack the classifier already reads this {truth} as {clean}.")
    attacked = s.linf > 0
    if no_attack(req):
        parts.append("No attack (epsilon 0): this is the defense on a clean image.")
    elif not attacked:
        parts.append("The attack found no perturbation to make (it changed nothing), so there was nothing to catch."
                     + (f" With {req.steps} steps it had few tries: more steps (under more settings) give it more."
                        if req.attack != "fgsm" and req.steps < MAX_STEPS // 2 else ""))
    else:
        before, after = top_name(s.target_clean), top_name(s.adversarial.top3)
        fooled = after != before
        parts.append(f"The attacker targeted {s.target} and {'fooled it' if fooled else 'did not fool it'} "
                     f"({before} → {after}).")
    det = s.detection
    seen = "flagged the image as attacked" if det["attacked"] else "judged the image clean"
    if attacked:
        seen = "caught the attack" if det["attacked"] else "missed the attack"
    gate = ("" if defense.config.gate else
            "; it only reports here: every input is purified whatever it says")
    chance, threshold = chances(det["probability"], det["threshold"])
    parts.append(f"The detector {seen} (chance it was attacked {chance}, it says attacked above {threshold}){gate}.")
    if attacked and s.counter is not None:   # the two changes side by side, in /255 (panels 2 and 5)
        parts.append(f"The attack changed each pixel by at most {s.linf * 255:.1f}/255; the ISM answered with a change "
                     f"of at most {s.counter_linf * 255:.1f}/255 (panel 5), which the classifier reads as "
                     f"{top_name(s.purified.top3)}.")
    if label_known:
        parts.append(f"The defense's final answer: {fin} ({'right' if fin == truth else 'wrong'}: the true label, "
                     f"{truth}).")
    else:   # no true label for an upload: compared with the classifier's own answer, never called right or wrong
        same = "the same as" if fin == truth else "not"
        parts.append(f"The defense's final answer: {fin} ({same} the classifier's own answer on your clean picture, "
                     f"{truth}).")
    if attacked and fin == truth and top_name(s.adversarial.top3) != truth:
        parts.append("The defense undid what the attack did to its target.")
    elif attacked and fin != truth and (not label_known or clean == truth):
        parts.append("The attack got through the defense.")
    return " ".join(parts)
