"""Typed keys of the evaluation results. Every module that writes or reads a results cell goes
through these, so a renamed or missing cell is an error naming it, never a silently skipped check
while the report still says "n of n pass"."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

EPS_8 = 8 / 255   # the headline epsilon


class ResultsError(KeyError):
    """An expected results cell is missing."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Cell:
    """A cell of the ``graybox``, ``adaptive`` or ``latent`` sections: one attack at one epsilon."""
    attack: str
    eps: float

    def __str__(self) -> str:            # the JSON key
        return f"{self.attack}@{self.eps:.4f}"

    @classmethod
    def parse(cls, text: str) -> "Cell":
        attack, sep, eps = text.partition("@")
        if not sep:
            raise ResultsError(f"{text!r} is not a results cell key (attack@eps)")
        return cls(attack, float(eps))

    def of(self, res: dict, section: str) -> dict:
        """The cell's row in ``res[section]``; ``ResultsError`` if it is missing."""
        try:
            return res[section][str(self)]
        except KeyError:
            raise ResultsError(f"results have no {section} cell {self} "
                               f"(present: {', '.join(res.get(section, {})) or 'none'})") from None


class Sanity(str, Enum):
    """The sanity section's measurements (``res["sanity"]["accuracy"][key]``)."""
    PGD = "adaptive_pgd"                      # adaptive PGD with the evaluation's steps
    PGD_MORE_STEPS = "adaptive_pgd_more_steps"
    PGD_UNBOUNDED = "adaptive_pgd_unbounded"  # eps = 1
    SQUARE = "square"                         # black-box

    def label(self, steps: int, more_steps: int, queries: int) -> str:
        return {Sanity.PGD: f"adaptive PGD-{steps}", Sanity.PGD_MORE_STEPS: f"adaptive PGD-{more_steps}",
                Sanity.PGD_UNBOUNDED: f"adaptive PGD-{more_steps}, eps = 1 (unbounded)",
                Sanity.SQUARE: f"Square, {queries} queries (black-box)"}[self]


class Ablation(str, Enum):
    """Columns of an ablation row (``res["ablation"]["rows"][i][column]``)."""
    CLEAN = "clean"
    GRAYBOX = "graybox_pgd10_8/255"
    ADAPTIVE = "adaptive_pgd10_8/255"


def sanity_accuracy(res: dict) -> dict:
    """{Sanity: accuracy} of the results' sanity section; ``ResultsError`` names a missing one."""
    acc = res["sanity"]["accuracy"]
    missing = [k.value for k in Sanity if k.value not in acc]
    if missing:
        raise ResultsError(f"the sanity section lacks {', '.join(missing)} (has {', '.join(acc)})")
    return {k: acc[k.value] for k in Sanity}
