"""The Curves tab's live side: accuracy against epsilon measured on a small batch while the visitor
waits, and the one-sentence summary of the adaptive results."""
from __future__ import annotations

import torch

from ism.attacks.adaptive import make_adaptive_attack
from ism.attacks.standard import make_attack, seeded
from ism.defense import Defense
from ism.eval.curves import ALONE
from ism.eval.keys import EPS_8, Cell


def measure_curves(defense: Defense, images: torch.Tensor, labels: torch.Tensor, eps_list, attack: str = "pgd",
                   steps: int = 10, adaptive: bool = True, seed: int = 0, progress=None) -> dict:
    """Accuracy of the classifier alone / the defense (gray-box) / the defense (adaptive PGD) at each epsilon."""
    series = {f"{ALONE}, gray-box": [], "this defense, gray-box": []}
    if adaptive:
        series["this defense, adaptive"] = []
    total = len(eps_list) * (2 if adaptive else 1)
    done = 0
    for eps in eps_list:
        with seeded(seed):
            xa = make_attack(attack, defense.classifier, eps, steps, seed=seed)(images, labels) if eps > 0 else images
        with torch.no_grad():
            series[f"{ALONE}, gray-box"].append((eps, float((defense.classifier(xa).argmax(1) == labels).float().mean())))
            series["this defense, gray-box"].append((eps, float((defense.predict(xa).argmax(1) == labels).float().mean())))
        done += 1
        if progress:
            progress(done / total, f"gray-box eps={eps:.3f}")
        if adaptive:
            with seeded(seed):
                xa = make_adaptive_attack(defense, eps, steps, eot_iter=1, seed=seed)(images, labels) if eps > 0 else images
            with torch.no_grad():
                series["this defense, adaptive"].append((eps, float((defense.predict(xa).argmax(1) == labels).float().mean())))
            done += 1
            if progress:
                progress(done / total, f"adaptive eps={eps:.3f}")
    return series


# results/<key>-graybox-caught[-limit<N>].json: a gray-box evaluation of its own that measured fooled / caught /
# restored (``python -m ism.eval --sections graybox --eps 8/255 --name <key>-graybox-caught``), where the
# defense's main results file predates those columns
CAUGHT = "graybox-caught"


def caught_summary(results: dict | None, eps: float = EPS_8) -> str:
    """One plain sentence on what the defense does with the attacks that fool its classifier (gray-box PGD-10
    at ``eps``, the evaluation's fooled / caught / restored), or "" where those were not measured."""
    g = (results or {}).get("graybox", {}).get(str(Cell("pgd", eps)), {})
    if "restored" not in g or not g.get("fooled") or leaks(results, eps):
        return ""
    n = g.get("images", results.get("clean", {}).get("images"))
    return (f"**Measured**{f' on {n:,} test pictures' if n else ''}: gray-box PGD-10 at {eps * 255:.0f}/255 turns {g['fooled']:.0%} of them from right "
            f"to wrong; the detector catches {g['caught']:.0%} of those and the defense answers {g['restored']:.0%} of "
            "them right again.\n\n")


def leaks(results: dict | None, eps: float) -> bool:
    """Whether the pipeline reads gray-box PGD-10 pictures at ``eps`` right more often than clean ones: the attack's
    pattern carries the label back (label leaking), so those figures are not a result."""
    g = (results or {}).get("graybox", {}).get(str(Cell("pgd", eps)), {})
    clean = (results or {}).get("clean", {}).get("pipeline")
    return "defense" in g and clean is not None and g["defense"] > clean


def adaptive_summary(results: dict | None, caught: dict | None = None, eps: float = EPS_8) -> str:
    """Plain sentences on how the defense fares: against the attacks that fool its classifier (gray-box), then
    against an adaptive attacker, from the results. ``caught``: a gray-box evaluation of its own that measured
    fooled / caught / restored, said where ``results`` did not measure them."""
    said = caught_summary(results, eps) or caught_summary(caught, eps)
    if not said and eps != EPS_8:           # not measured at the page's strength: the 8/255 figures, said so
        said = caught_summary(results) or caught_summary(caught)
        why = (", where the measured gray-box figures are above clean accuracy: the attack's pattern carries the label "
               "back, so they are not a result" if leaks(results, eps) or leaks(caught, eps) else "")
        said = said and said.replace("**Measured**", f"**Measured at 8/255** (this page attacks at "
                                                      f"{eps * 255:.0f}/255{why})", 1)
    return said + _adaptive_sentence(results) + _refusal_sentence(results)


def _refusal_sentence(results: dict | None) -> str:
    """What refusing every caught picture would give (the evaluation's ``refusal`` section), where measured."""
    r = (results or {}).get("refusal", {}).get(str(Cell("pgd", EPS_8)))
    if not r:
        return ""

    def pct(v: float) -> str:               # never "100%" or "0%" for what is not all or none
        return "over 99%" if 0.995 <= v < 1 else "under 1%" if 0 < v < 0.005 else f"{v:.0%}"

    clean = results.get("clean", {})
    fpr, n = clean.get("false_positive_rate", r["clean_refused"]), clean.get("images", r["images"])
    return (f"\n\n**Refusing every caught picture instead** (answering nothing to it): on {r['images']:,} test "
            f"pictures at 8/255 it would stop {pct(r['graybox_stopped'])} of the gray-box attacks and "
            f"{pct(r['adaptive_stopped'])} of those of the attacker we tried who knows about the refusal "
            f"(PGD-{r['steps']}; stopped: refused, or let through and answered right), and refuse {pct(fpr)} of "
            f"{n:,} clean pictures. That says less than it seems: the detector reacts to any faint pixel noise, not "
            f"to intent (it would refuse {pct(r['noise1_refused'])} of clean pictures with each pixel nudged at "
            "random by one step of brightness, 1/255), so an attacker who changes every pixel a little is always "
            "caught; a gentler one was not tried.")


def _adaptive_sentence(results: dict | None) -> str:
    rows = (results or {}).get("adaptive", {})
    r = rows.get(str(Cell("pgd", EPS_8)))
    if not r:
        return ("Adaptive (white-box) results are not measured yet: treat gray-box figures as an upper bound.")
    g = results.get("graybox", {}).get(str(Cell("pgd", EPS_8)), {})

    def images(cell: dict) -> int:                        # each figure with its own image count
        return cell.get("images", results["clean"]["images"])

    verdict = "It stops attackers who do not know it, not those who do." if r["defense"] < 0.2 else \
        "Part of it survives (see the curves)."
    return ("In all (8/255): "
            + (f"{g['defense']:.0%} of {images(g):,} right against gray-box PGD-10, " if "defense" in g else "")
            + f"{r['defense']:.0%} of {images(r):,} right against an attacker who knows the whole defense (adaptive)"
            + f". {verdict}")
