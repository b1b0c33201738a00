"""A guided lesson a teacher can run in class, one click per step (issue 16). Every step is a
preset of the compare engine (``ism.app.compare``: the same attacks and ``Defense.read`` as the main
tab) on one shipped example, and says in two sentences what to look for; the sentences above the
result are computed from what actually happened on this run, never assumed."""
from __future__ import annotations

from dataclasses import dataclass

from ism.app.compare import ALONE, Contender


@dataclass(frozen=True)
class Step:
    title: str
    explain: str                 # two sentences, shown before the result
    defenses: tuple[str, ...]    # contenders, by name (compare.EXPLAIN), in the order shown
    threats: tuple[str, ...]
    eps: float = 8 / 255
    attack: str = "pgd"
    steps: int = 10


STEPS = (
    Step("1. An invisible change fools a classifier",
         "A classifier trained on clean images is attacked with PGD: every pixel moves by at most 8/255, "
         "less than you can see. Compare its answer on the attacked image with the original.",
         ("no defense",), ("gray-box",)),
    Step("2. The defense catches and undoes it",
         "The same attack, now against the paper's defense, by an attacker who knows the classifier but "
         "not the defense (gray-box). The detector looks at what the ISM network removes, and the classifier "
         "reads the ISM's purified image instead of the attacked one.",
         ("paper's recipe",), ("gray-box",)),
    Step("3. An attacker who knows the defense",
         "Now the attacker knows the whole defense and aims the change at it: at the detector, the ISM and the "
         "classifier together (adaptive white-box). This is how published purifier defenses were broken.",
         ("paper's recipe",), ("adaptive white-box",)),
    Step("4. A defense hardened against that attacker",
         "The same adaptive attacker against the undefended classifier, the paper's defense and a defense "
         "whose ISM and classifier were adversarially trained together. Hardening costs clean accuracy and "
         "holds only part of the time: the Robustness curves tab has the measured rates.",
         ("no defense", "paper's recipe", "hardened"), ("adaptive white-box",)),
)

# The example each data set's lesson uses, chosen by running every shipped example through all four steps
# and taking one where the story of the steps shows (tests/test_compare.py checks it still does). CelebA:
# female_0, the first in gallery order of the 9 of 14 faces that tell it (measured 2026-11-27).
EXAMPLES = {"cifar10": "airplane_0", "celeba": "female_0"}


def contenders_for(step: Step, available: list[Contender]) -> list[Contender]:
    """The step's contenders that this server has, in the step's order; the hardened defense stands in
    for the paper's recipe where that was not trained (the step's text then says so)."""
    by = {c.name: c for c in available}
    out = []
    for name in step.defenses:
        c = by.get(name) or {"paper's recipe": by.get("hardened"), "no defense": by.get(ALONE)}.get(name)
        if c is not None and c not in out:
            out.append(c)
    return out


def stand_in_note(step: Step, available: list[Contender]) -> str:
    """What differs on this server from the step's text: a stand-in for a defense it does not have."""
    by = {c.name: c for c in available}
    notes = []
    if "no defense" in step.defenses and "no defense" not in by and ALONE in by:
        notes.append(f" (No clean-trained classifier on this data set: {by[ALONE].about} stands in.)")
    if "paper's recipe" in step.defenses and "paper's recipe" not in by:
        notes.append(" (The paper's recipe is not trained for this data set on this server: the hardened defense "
                     "stands in.)")
    return "".join(notes)
