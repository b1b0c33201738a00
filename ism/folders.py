"""Where things live in a defense's weights folder, beyond one folder per component: the stages the
per-stage ablation and ``python -m train robust`` keep (see ism/eval/ablation.py for the layout), and
where the paper's recipe sits beside a hardened defense."""
from __future__ import annotations

from pathlib import Path

ROBUST_MARKER = "ablation/robust.json"


def robust_trained(root: str | Path) -> bool:
    """Whether ``python -m train robust`` replaced the classifier and ISM in ``root``."""
    root = Path(root)
    return (root / ROBUST_MARKER).is_file() or (root / "ablation" / "ism" / "model.safetensors").is_file()


def base_classifier_folder(root: str | Path) -> Path:
    """The raw-image classifier (distillation + FGSM-RS): ``ablation/adversarial`` once
    ``python -m train robust`` has replaced ``classifier`` by one trained on purified inputs."""
    root = Path(root)
    folder = root / "ablation" / "adversarial"
    return folder if (folder / "model.safetensors").exists() else root / "classifier"


def base_ism_folder(root: str | Path) -> Path:
    """The ISM that ``python -m train robust`` starts from: ``ablation/ism`` (the Eq. 3 ISM) where
    that stage kept it, else ``ism`` (a rerun then continues from the hardened one)."""
    root = Path(root)
    folder = root / "ablation" / "ism"
    return folder if (folder / "model.safetensors").exists() else root / "ism"


def paper_recipe_folder(weights_dir: str | Path, dataset: str) -> Path:
    """The paper's recipe for ``dataset`` beside the hardened defenses in ``weights_dir``:
    ``<weights_dir>/<dataset>-paper`` (``python -m train all --recipe paper --out`` that folder)."""
    return Path(weights_dir) / f"{dataset}-paper"
