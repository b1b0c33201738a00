"""How many gallery runs at the app's default settings show the whole story (issue "caught and undone").

Every shipped example of the data set (``examples/<dataset>``, chosen by a rule, never by the result) goes
through the app's own run (``ism.app.demo.run_demo``) with every setting at its default: gray-box PGD-10 against
the classifier alone at the data set's default epsilon (8/255 on CIFAR-10, 16/255 on faces), seed 0, the
defense's regeneration settings. A run "shows the story" when
the classifier reads the clean image right, the attack fools it, the detector catches the attacked image and
the defense's final answer is right again. Also counted: the regenerated image read right (its last frame).

    python benchmarks/story.py weights/cifar10-paper --out results/story-cifar10-paper.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ism.app.defenses import default_eps, examples  # noqa: E402
from ism.app.demo import run_demo  # noqa: E402
from ism.app.request import RunRequest  # noqa: E402
from ism.attacks.standard import parse_eps  # noqa: E402
from ism.data.images import prepare_image  # noqa: E402
from ism.defense import load_defense  # noqa: E402


def read(stage) -> str:
    top = stage.top3
    return max(top, key=top.get)


def story(folder: str, attack: str = "pgd", eps: float | None = None, steps: int = 10) -> dict:
    """Counts and every run; ``eps`` None: the app's default for the data set (``default_eps``)."""
    d = load_defense(folder)
    eps = default_eps(d) if eps is None else eps
    req = RunRequest(attack=attack, eps=eps, steps=steps, restarts=d.config.regen_restarts,
                     iterations=d.config.regen_steps)
    rows = []
    for ex in examples(d, d.config.dataset):
        x = prepare_image(ex.path, d.classifier.config.image_size).tensor
        *_, s = run_demo(d, x, ex.label, req)
        row = {"example": Path(ex.path).stem, "attack changed the picture": s.linf > 0,
               "clean right": read(s.original) == ex.name,
               "fooled": read(s.adversarial) != ex.name, "caught": bool(s.detection["attacked"]),
               "purified right": read(s.purified) == ex.name,
               "regenerated right": bool(s.regeneration) and read(s.regeneration[-1]) == ex.name,
               "final right": read(s.final) == ex.name}
        row["story"] = row["clean right"] and row["fooled"] and row["caught"] and row["final right"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "example"]
    return {"defense": folder, "settings": f"gray-box {attack} ({steps} steps) at {eps * 255:.1f}/255, seed 0, the "
                                            "defense's regeneration settings",
            "examples": len(rows), **{k: sum(r[k] for r in rows) for k in keys}, "runs": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a defense folder, e.g. weights/cifar10-paper")
    p.add_argument("--attack", default="pgd")
    p.add_argument("--eps", type=parse_eps, default=None, help="e.g. 8/255 or 0.03 (default: the app's for the data set)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", help="write the counts and every run as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = story(a.folder, a.attack, a.eps, a.steps)
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
