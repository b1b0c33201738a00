"""The served defenses and their facts: which folders hold one, in which order the app serves them, how the page
names each, its default attack strength, its example pictures and its data-set recogniser."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ism.data.datasets import DATASETS
from ism.data.examples import EXAMPLES_DIR
from ism.defense import Defense, load_defense
from ism.folders import paper_recipe_folder
from ism.hub import WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
OUTSIDE = "This picture does not look like"   # how the recogniser's sentence starts
# what the recogniser's sentence calls each data set's pictures, and what its classifier answers
KIND_WORDS = {"cifar10": "CIFAR-10's small photos of ten kinds of things", "celeba": "CelebA's face photos"}


def load_recogniser(defense: Defense):
    """The defense folder's data-set recogniser (``recogniser/``, from ``python -m train recogniser``), or None
    where the folder has none (an older or a Hub defense without one: uploads then get no such sentence)."""
    from ism.models.recogniser import DataSetRecogniser  # (only where a defense has one)

    source = getattr(defense, "source", None)
    folder = Path(source) / "recogniser" if source else None
    if folder is None or not (folder / "model.safetensors").is_file():
        return None
    model = DataSetRecogniser.from_pretrained(str(folder)).eval().requires_grad_(False)
    kinds = model.config.kinds
    if defense.config.dataset not in kinds or not set(kinds) - {defense.config.dataset} <= set(KIND_WORDS):
        return None
    return model


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
    keys = [k for name in DATASETS for k in (paper_recipe_folder(weights_dir, name).name, name)]
    return [k for k in keys if (Path(weights_dir) / k / "defense.json").is_file()]


def is_paper_recipe(defense: Defense) -> bool:
    """Whether ``defense`` is the paper's recipe (its folder is ``<dataset>-paper``), not the hardened one."""
    return Path(getattr(defense, "source", "") or ".").name == paper_recipe_folder(".", defense.config.dataset).name


def defense_title(defense: Defense) -> str:
    """The data set and the defense, as the page names them: "CIFAR-10 · the paper's recipe"."""
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
    lines = []
    for name, d in defenses.items():
        sums = Path(d.source) / "checksums.json"
        n = len(json.loads(sums.read_text())) if sums.is_file() else 0
        checked = f"sha256 of {n} files verified" if n else "no checksums recorded: files not verified"
        stale = f"; WARNING: {'; '.join(d.stale)}" if getattr(d, "stale", None) else "; components consistent"
        lines.append(f"{name}: {getattr(d, 'origin', d.source)}; {checked}{stale}")
    return lines


