"""One run's settings: ``RunRequest``, the one object every part of the app passes.

The page builds it from its widgets (``RunRequest(**values)``: a widget is named after its field), a shared
link from its query string (ism/app/links.py) and the /defend API from its arguments; it is checked once, when
it is made, against the bounds below, and sent whole to the worker that computes the run (ism/app/runner.py).
A bad value is one ``UserError`` sentence. Adding a setting means a field here (with its check), its widget
(ism/app/tabs/attack.py, named after the field) and its test; links, the API, the cache key and the worker take
it from the field list (docs/design.md walks through one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ism.attacks.standard import MAX_STEPS, attack, parse_eps
from ism.defense import FINAL_INPUTS

MAX_EPS = 0.4              # epsilon's range is [0, MAX_EPS] (pixel values in [0, 1])
MAX_SEED = 2**32 - 1
MAX_RESTARTS = 8          # regeneration's restarts and iterations per run: at most 800 steps of the generator,
MAX_ITERATIONS = 100      # so that one visitor cannot hog the CPU

THREATS = {
    "gray-box": "The attacker knows the classifier's weights but not the defense (the paper's setting).",
    "adaptive white-box": "The attacker knows the whole defense and attacks it end to end.",
}
THREAT_DETAILS = {"adaptive white-box": "exact gradients through the ISM, BPDA through regeneration (its search "
                  "counted as passing its input through), EOT over its random restarts (gradients averaged)"}
THREAT_SHORT = {"gray-box": "gray-box", "adaptive": "adaptive white-box"}   # a link's names for them
READS = {"purified image (ISM)": "purified", "regenerated image (GAN)": "regenerated"}   # the page's names


class UserError(ValueError):
    """A message for the visitor."""


def as_seed(value) -> int:
    """The seed field's value as an int (a float from the number box, or text from the API or a link), or a
    ValueError a visitor can act on."""
    msg = f"the seed must be a whole number from 0 to {MAX_SEED}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(msg + " (it is empty)")
    if isinstance(value, bool):
        raise ValueError(f"{msg}, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{msg}, got {value!r}") from None
    if not f.is_integer() or not 0 <= f <= MAX_SEED:
        raise ValueError(f"{msg}, got {value!r}")
    return int(f)


def _whole(value, what: str, low: int, high: int) -> int:
    """A whole number in [low, high] (an int, a whole float from a slider, or text), else a ValueError."""
    try:
        if isinstance(value, bool):
            raise ValueError
        f = float(value)
        if not f.is_integer():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {value!r}") from None
    if not low <= f <= high:
        raise ValueError(f"{what} must lie in [{low}, {high}], got {value!r}")
    return int(f)


@dataclass(frozen=True)
class RunRequest:
    """One run, as a visitor asks for it. Field order is the /defend API's argument order."""
    file: str | None = None          # an example's or an uploaded picture's path (not part of what is computed)
    attack: str = "pgd"              # an internal name (ism.attacks.standard.TABLE) or the page's label
    eps: float = 8 / 255             # L∞ budget in [0, 1] units (text "8/255" is read too)
    steps: int = 10
    threat: str = "gray-box"         # a THREATS key (or a link's short name)
    restarts: int = 4                # regeneration's random restarts
    iterations: int = 30             # regeneration's iterations
    seed: int = 0
    defense: str | None = None       # which served defense (its folder name, "cifar10-paper"); None: the first
    read: str | None = None          # which picture the classifier reads for an input judged attacked: None = the
                                     # defense's own choice (config.final_input), or one of FINAL_INPUTS

    def __post_init__(self):
        """Each field checked and put in its one form (bounds above), or one ``UserError`` sentence."""
        try:
            spec = attack(self.attack)
            eps = parse_eps(self.eps) if isinstance(self.eps, str) else float(self.eps)
            if not 0.0 <= eps <= MAX_EPS:
                raise ValueError(f"epsilon must lie in [0, {MAX_EPS}], got {self.eps}")
            threat = THREAT_SHORT.get(self.threat, self.threat)
            if threat not in THREATS:
                raise ValueError(f"unknown threat model {self.threat!r}; choose {' or '.join(THREATS)}")
            restarts = _whole(self.restarts, "regeneration restarts", 1, MAX_RESTARTS)
            iterations = _whole(self.iterations, "regeneration iterations", 0, MAX_ITERATIONS)
            read = READS.get(self.read, self.read) or None
            if read not in (None, *FINAL_INPUTS):
                raise ValueError(f"the classifier reads one of {', '.join(FINAL_INPUTS)}, not {self.read!r}")
            checked = dict(attack=spec.name, eps=eps, threat=threat, restarts=restarts, iterations=iterations,
                           steps=_whole(self.steps, "attack steps", 1, MAX_STEPS), seed=as_seed(self.seed),
                           read=read, file=str(self.file) if self.file else None,
                           defense=str(self.defense) if self.defense else None)
        except (TypeError, ValueError, OverflowError) as e:
            raise UserError(str(e)) from None
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The fields, in the API's order (the page's widgets are named after them)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def for_defense(cls, key: str, served, **settings) -> "RunRequest":
        """The page's defaults on ``served``, the Defense served as ``key`` (its attack strength and
        regeneration), with ``settings`` (a ``defense`` among them must be ``key``; a strength or regeneration
        setting of None is the defense's own, as the /defend API's defaults say)."""
        from ism.app.defenses import default_eps

        if settings.pop("defense", None) not in (None, key):
            raise UserError(f"this request is for another defense than {key!r}")
        settings = {k: v for k, v in settings.items() if v is not None or k not in ("eps", "restarts", "iterations")}
        base = dict(eps=default_eps(served), restarts=served.config.regen_restarts,
                    iterations=served.config.regen_steps)
        return cls(**{**base, **settings, "defense": key})

    def computed(self) -> dict:
        """What decides the run's result (its cache key): every field but the picture's file name (the pixels
        count, and the page re-saves an example under a new name)."""
        return {k: v for k, v in asdict(self).items() if k != "file"}

    def but(self, **changes) -> "RunRequest":
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)
