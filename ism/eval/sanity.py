"""Checks that flag a flawed evaluation (Carlini et al. 2019, "On evaluating adversarial robustness").

Each check compares measured accuracies and allows for sampling noise: two accuracies p1, p2 on
n1, n2 images differ "really" only by more than ``2 * sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2)``
(at least 0.005). A failed check does not stop the evaluation; it is printed as a warning and
written into the results, because it usually means the attack, not the defense, is weak
(gradient masking, label leaking, a randomised defense attacked without EOT).
"""
from __future__ import annotations

from ism.eval.keys import Sanity, sanity_accuracy
from ism.eval.metrics import noise_margin

UNBOUNDED_MAX = 0.05   # an unbounded attack must bring accuracy to about zero


def _check(name: str, passed: bool, detail: str) -> dict:
    return {"check": name, "passed": bool(passed), "detail": detail}


def series(res: dict) -> dict:
    """{(threat, attack, column): [(eps, accuracy, n), ...]} for every curve in the results."""
    out = {}
    for threat in ("graybox", "adaptive"):
        for r in res.get(threat, {}).values():
            for col in ("no_defense", "defense", "base_no_defense", "magnet", "ddsa"):
                if col in r:
                    out.setdefault((threat, r["attack"], col), []).append((r["eps"], r[col], r.get("images", 0)))
    return {k: sorted(v) for k, v in out.items()}


CLEAN_OF = {"no_defense": "classifier", "defense": "pipeline", "base_no_defense": "base_classifier",
            "magnet": "magnet", "ddsa": "ddsa"}


def sanity_checks(res: dict) -> list[dict]:
    checks = []
    clean = res.get("clean", {})
    n_clean = clean.get("images", 0)
    for (threat, attack, col), pts in series(res).items():
        name = f"{threat} {attack.upper()}, {col}"
        bad = [(e1, a1, e2, a2) for (e1, a1, n1), (e2, a2, n2) in zip(pts, pts[1:]) if a2 > a1 + noise_margin(a1, n1, a2, n2)]
        checks.append(_check(f"larger epsilon never raises accuracy ({name})", not bad,
                             "; ".join(f"eps {e1:.3f}: {a1:.3f} -> eps {e2:.3f}: {a2:.3f}" for e1, a1, e2, a2 in bad)
                             or "monotone within noise"))
        c = clean.get(CLEAN_OF[col])
        if c is not None:
            above = [(e, a) for e, a, n in pts if a > c + noise_margin(a, n, c, n_clean)]
            checks.append(_check(f"accuracy under attack is not above clean accuracy ({name})", not above,
                                 "; ".join(f"eps {e:.3f}: {a:.3f} > clean {c:.3f}" for e, a in above)
                                 or f"all at or below clean {c:.3f}"))
    s = res.get("sanity")
    if s:
        acc, n, label = sanity_accuracy(res), s["images"], s.get("labels", {})
        few, many = acc[Sanity.PGD], acc[Sanity.PGD_MORE_STEPS]
        checks.append(_check("more attack steps never raise accuracy", many <= few + noise_margin(few, n, many, n),
                             f"{label.get(Sanity.PGD.value, 'fewer steps')}: {few:.3f}, "
                             f"{label.get(Sanity.PGD_MORE_STEPS.value, 'more steps')}: {many:.3f} ({n} images)"))
        unb = acc[Sanity.PGD_UNBOUNDED]
        checks.append(_check("an unbounded attack reaches ~0% accuracy", unb <= UNBOUNDED_MAX,
                             f"{unb:.3f} (must be <= {UNBOUNDED_MAX})"))
        sq = acc[Sanity.SQUARE]
        checks.append(_check("black-box Square is not stronger than white-box PGD", sq >= few - noise_margin(sq, n, few, n),
                             f"Square {sq:.3f}, PGD {few:.3f} ({n} images, eps {s['eps']:.4f})"))
    return checks


def warnings_text(checks: list[dict]) -> list[str]:
    return [f"WARNING (sanity check failed): {c['check']}: {c['detail']}" for c in checks if not c["passed"]]
