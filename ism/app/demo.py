"""One demonstration, stage by stage: attack an image and watch the defense catch and undo it.

``run_demo`` is a generator of ``DemoState`` snapshots, each a little more complete (the
regeneration stage adds one snapshot per iteration), so a UI can stream it. Everything the app
shows comes from here; ``app.py`` only maps states to widgets.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ism.attacks.adaptive import AdaptiveTarget, make_adaptive_attack
from ism.attacks.standard import ATTACKS, make_attack, seeded
from ism.data.images import to_display
from ism.defense import Defense

THREATS = {
    "gray-box": "The attacker knows the classifier's weights but not the defense (the paper's setting).",
    "adaptive white-box": ("The attacker knows the whole defense and attacks it end to end: exact gradients "
                           "through the ISM, BPDA through regeneration, EOT over its random restarts."),
}
MAX_EPS = 0.4
MAX_STEPS = 100
MAX_REGEN_BUDGET = 1200   # restarts x iterations per request; keeps one visitor from hogging the CPU


@dataclass
class DemoRequest:
    attack: str = "pgd"
    eps: float = 8 / 255
    steps: int = 10
    threat: str = "gray-box"
    restarts: int = 4
    iterations: int = 30
    seed: int = 0
    max_seconds: float | None = None   # stop regenerating after this long (the app's per-request cap)

    def validate(self) -> "DemoRequest":
        if self.attack not in ATTACKS:
            raise ValueError(f"unknown attack {self.attack!r}; choose one of {', '.join(ATTACKS)}")
        if self.threat not in THREATS:
            raise ValueError(f"unknown threat model {self.threat!r}; choose {' or '.join(THREATS)}")
        if not 0.0 <= float(self.eps) <= MAX_EPS:
            raise ValueError(f"epsilon must lie in [0, {MAX_EPS}], got {self.eps}")
        if not 1 <= int(self.steps) <= MAX_STEPS:
            raise ValueError(f"attack steps must lie in [1, {MAX_STEPS}], got {self.steps}")
        if int(self.restarts) < 1 or int(self.iterations) < 0:
            raise ValueError("regeneration needs at least 1 restart and 0 or more iterations")
        if int(self.restarts) * max(1, int(self.iterations)) > MAX_REGEN_BUDGET:
            raise ValueError(f"restarts x iterations is capped at {MAX_REGEN_BUDGET} per request "
                             f"(asked {int(self.restarts)} x {int(self.iterations)})")
        if self.max_seconds is not None and not float(self.max_seconds) > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        return replace(self, eps=float(self.eps), steps=int(self.steps), restarts=int(self.restarts),
                       iterations=int(self.iterations), seed=int(self.seed))


@dataclass
class Stage:
    image: np.ndarray             # H x W x 3 uint8, for display
    top3: dict                    # class name -> probability
    seconds: float
    caption: str = ""


@dataclass
class DemoState:
    original: Stage | None = None
    perturbation: Stage | None = None
    adversarial: Stage | None = None
    detection: dict | None = None        # probability, attacked, strength, threshold, seconds
    purified: Stage | None = None
    regeneration: list = field(default_factory=list)   # list[Stage], one per iteration
    final: Stage | None = None
    verdict: str = ""
    warnings: list = field(default_factory=list)
    done: bool = False


def top3(defense: Defense, x: torch.Tensor) -> dict:
    with torch.no_grad():
        p = defense.classifier(x).float().softmax(1)[0]
    v, i = p.topk(min(3, len(p)))
    return {defense.classes[k]: float(s) for s, k in zip(v.tolist(), i.tolist())}


def _stage(defense, x, t0, caption="") -> Stage:
    return Stage(to_display(x), top3(defense, x), time.perf_counter() - t0, caption)


def _input_gradient_is_zero(defense: Defense, x: torch.Tensor, label: torch.Tensor) -> bool:
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(defense.classifier(x), label)
    (g,) = torch.autograd.grad(loss, x)
    return bool(g.abs().max() == 0)


def run_demo(defense: Defense, x: torch.Tensor, label: int | None, request: DemoRequest):
    """Yield ``DemoState``s for one image ``x`` (1, C, H, W) in [0, 1].

    ``label`` is the true class when known (examples); otherwise the classifier's own prediction
    on the clean image is what the attacker tries to change.
    """
    req = request.validate()
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
    with seeded(req.seed):
        if req.eps == 0 and req.attack not in ("cw", "deepfool"):
            x_adv = x.clone()
        elif req.threat == "gray-box":
            x_adv = make_attack(req.attack, defense.classifier, req.eps, req.steps, seed=req.seed)(x, y)
        elif req.attack == "pgd":
            x_adv = make_adaptive_attack(defense, req.eps, req.steps, eot_iter=2, seed=req.seed)(x, y)
        else:
            x_adv = make_attack(req.attack, AdaptiveTarget(defense, req.seed), req.eps, req.steps, seed=req.seed)(x, y)
    x_adv = x_adv.detach().clamp(0, 1)
    dt = time.perf_counter() - t
    delta = x_adv - x
    linf, l2 = float(delta.abs().max()), float(delta.flatten().norm())
    amp = 0.5 + delta / (2 * max(linf, 1e-8))
    s.perturbation = Stage(to_display(amp), {}, dt, f"L∞ = {linf:.4f} ({linf * 255:.1f}/255), L2 = {l2:.3f} "
                           "(amplified to full contrast)")
    s.adversarial = Stage(to_display(x_adv), top3(defense, x_adv), dt, f"{req.attack.upper()}, {req.threat}")
    if req.threat == "gray-box" and _input_gradient_is_zero(defense, x, y):
        s.warnings.append("The classifier's input gradient is exactly zero here: gradient-based attacks "
                          "cannot move this image, and robustness measured this way is gradient masking.")
    yield s

    # detection and purification
    t = time.perf_counter()
    with torch.no_grad():
        purified = defense.ism(x_adv)
        det = defense.detection(x_adv, purified)
    s.detection = {"probability": float(det.probability), "attacked": bool(det.attacked),
                   "strength": float(det.strength), "threshold": defense.threshold,
                   "seconds": time.perf_counter() - t}
    t = time.perf_counter()
    s.purified = _stage(defense, purified, t, "ISM(x')")
    yield s

    # regeneration, streamed
    t = time.perf_counter()
    last = None
    for step in defense.regenerate_steps(x_adv, steps=req.iterations, restarts=req.restarts, seed=req.seed):
        last = step
        s.regeneration.append(Stage(to_display(step.image), top3(defense, step.image), time.perf_counter() - t,
                                    f"iteration {step.step}: MSE {float(step.error):.5f}"))
        yield s
        if req.max_seconds is not None and time.perf_counter() - t_start > req.max_seconds and not step.done:
            s.warnings.append(f"Regeneration stopped after iteration {step.step}: this server caps a run at "
                              f"{req.max_seconds:g} s so every visitor gets a turn.")
            break
    if defense.config.final_input != "purified":
        s.warnings.append("The defense is randomised (regeneration's random restarts): a fair attack "
                          "averages over them (EOT); compare the two threat models.")
        s.warnings.append("The defense optimises at inference (regeneration loop): its gradient is not "
                          "the attack's gradient, so gray-box numbers overstate robustness; BPDA attacks it.")

    # final decision
    t = time.perf_counter()
    gated = defense.config.gate
    head = ("judged attacked" if det.attacked else "judged clean") if gated else "every input is purified"
    with torch.no_grad():
        read = defense.read(x_adv, regenerated=last.image if last is not None else None)
    final, source = read.image, read.source[0]
    why = {"input": "judged clean: the classifier reads the input as is",
           "purified": f"{head}: the classifier reads the ISM output",
           "regenerated": f"{head}: the classifier reads the regenerated image",
           "mean": f"{head}: the classifier reads mean(ISM, regenerated)"}[source]
    s.final = _stage(defense, final, t, why)
    s.verdict = verdict(defense, int(y), s, req, label_known=label is not None)
    s.done = True
    yield s


def verdict(defense: Defense, y: int, s: DemoState, req: DemoRequest, label_known: bool = True) -> str:
    name = defense.classes
    clean = max(s.original.top3, key=s.original.top3.get)
    adv = max(s.adversarial.top3, key=s.adversarial.top3.get)
    fin = max(s.final.top3, key=s.final.top3.get)
    truth = name[y]
    caught = s.detection["attacked"]
    parts = []
    if req.eps == 0 and req.attack not in ("cw", "deepfool"):
        parts.append("No attack applied (epsilon 0).")
        parts.append("The detector " + ("wrongly flagged this clean image." if caught else "correctly let it through."))
    else:
        parts.append(f"The attack {'changed' if adv != clean else 'did not change'} the prediction "
                     f"({clean} → {adv}).")
        parts.append(f"Attack {'CAUGHT' if caught else 'MISSED'} by the detector "
                     f"(P(attacked) = {s.detection['probability']:.2f}, threshold {s.detection['threshold']:.2f}).")
    ref = "true" if label_known else "clean prediction"
    parts.append(f"Final prediction: {fin} — " + (f"matches the {ref} label ({truth})." if fin == truth
                                                  else f"differs from the {ref} label ({truth})."))
    if adv != truth and fin == truth:
        parts.append("Prediction RESTORED.")
    elif adv != truth:
        parts.append("Prediction NOT restored.")
    return " ".join(parts)
