"""Compare defenses: one image, one attack, one epsilon, attacked separately against each defense,
under both threat models (issue 16). The central lesson of the field, on one screen: a defense that
looks strong against a gray-box attacker can collapse when the attacker adapts to it.

Contenders, where their weights exist: no defense (a classifier trained on clean images only),
MagNet and DDSA (the paper's baselines, around the raw-image adversarially trained classifier),
the paper's recipe (``weights/<dataset>-paper``) and the hardened defense (``weights/<dataset>``).
The defenses are attacked with the app's own engine (``attack_image``, ``Defense.read``); the
baselines, which are differentiable end to end, are attacked through their purifier when adaptive.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ism.app.demo import attack_image
from ism.app.request import THREATS, RunRequest
from ism.data.images import to_display
from ism.defense import Defense
from ism.eval.curves import ALONE

# One name per classifier (issue "plain words"): "no defense" is only ever the clean-trained classifier; the
# adversarially trained classifier without ISM or detector is ALONE, here, in the curves and in the evaluation.
EXPLAIN = {
    "no defense": "a classifier trained on clean images only",
    ALONE: "the defense's adversarially trained classifier, without ISM or detector",
    "MagNet": "auto-encoder detector + reformer (Meng & Chen 2017) around the adversarially trained classifier",
    "DDSA": "denoising sparse auto-encoder (Bakhti et al. 2019) around the adversarially trained classifier",
    "paper's recipe": "the paper's defense as the paper trains it (Haque & Kang 2021), with a cleaning network "
                      "trained to undo attacks",
    "hardened": "this project's defense: ISM and classifier adversarially trained together",
}

# how a sentence names each contender ("no defense was fooled" read as if nothing was fooled)
IN_PROSE = {"no defense": "the undefended (clean-trained) classifier", ALONE: "the adversarially trained classifier alone",
            "paper's recipe": "the paper's recipe", "hardened": "the hardened defense"}


def in_prose(name: str) -> str:
    return IN_PROSE.get(name, name)


@dataclass
class Contender:
    name: str                  # a key of EXPLAIN
    classifier: nn.Module      # what a gray-box attacker attacks (the classifier it protects)
    whole: nn.Module | None    # what an adaptive attacker attacks (None: the same as gray-box)
    defense: Defense | None = None   # the ISM defenses: attacked and read with the app's engine
    magnet: nn.Module | None = None  # MagNet: its detectors can reject an input
    about: str = ""                  # what it is, one line (default EXPLAIN[name])

    def __post_init__(self):
        self.about = self.about or EXPLAIN[self.name]

    def answer(self, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(logits, the picture its classifier reads, what the detector did) for one attacked image."""
        with torch.no_grad():
            if self.defense is not None:
                r = self.defense.read(x_adv)
                d = r.detection
                caught = bool(d.attacked[0])
                said = (f"{'caught' if caught else 'missed'} (P = {float(d.probability[0]):.2f})"
                        + ("; every input cleaned, none refused" if not self.defense.config.gate else
                           "; cleaned, not refused" if caught else ""))
                return r.logits, r.image, said
            if self.magnet is not None:
                logits, scores = self.magnet.outputs(x_adv)
                rejected = bool(self.magnet.rejected(x_adv, scores)[0])
                return logits, self.magnet.ae(x_adv), "rejected the input" if rejected else "let it through"
            if self.whole is not None:                # DDSA: classifier(purifier(x))
                return self.whole(x_adv), self.whole.purifier(x_adv), "no detector"
            return self.classifier(x_adv), x_adv, "no detector"


@dataclass
class Row:
    defense: str
    about: str
    threat: str
    attacked: object        # H x W x 3 uint8
    linf: float
    detector: str
    seen: object            # the picture its classifier reads (``Defense.read``'s image), H x W x 3 uint8
    prediction: str
    confidence: float
    correct: bool
    defended: bool          # right answer, or (MagNet) the attacked input rejected
    clean_prediction: str   # its answer before any attack
    seconds: float

    def public(self) -> dict:
        """The row without its images (the API's JSON)."""
        return {k: v for k, v in asdict(self).items() if k not in ("attacked", "seen")}


def contenders(hardened: Defense, weights_dir: str | Path | None = None, loaded: dict | None = None) -> list[Contender]:
    """Every defense this server can compare for ``hardened``'s data set, in teaching order. ``hardened`` is the
    defense the app serves; where that is the paper's recipe, the hardened one is loaded from beside it."""
    from ism.defense import load_defense
    from ism.folders import paper_recipe_folder
    from ism.models.baselines import load_baselines
    from ism.models.classifier import Classifier

    served = Path(getattr(hardened, "source", "") or ".")
    weights_dir = Path(weights_dir) if weights_dir else served.parent
    paper_root = paper_recipe_folder(weights_dir, hardened.config.dataset)
    loaded = {Path(k).resolve(): d for k, d in (loaded or {}).items()}   # defenses the server holds already

    def load(folder: Path):
        if folder.resolve() in loaded:
            return loaded[folder.resolve()]
        return load_defense(folder) if (folder / "defense.json").is_file() else None

    if served.resolve() == paper_root.resolve():      # the app serves the paper's recipe: find the hardened one
        paper, root = hardened, weights_dir / hardened.config.dataset
        hardened = load(root)
    else:
        root = served
        paper = load(paper_root)
    plain_folder = paper_root / "ablation" / "plain"
    out = []
    if (plain_folder / "model.safetensors").is_file():
        out.append(Contender("no defense", Classifier.from_pretrained(str(plain_folder)).eval(), None))
    for source in (root, paper_root):
        if (source / "baselines").is_dir():
            base = load_baselines(source)
            if not out:
                out.append(Contender(ALONE, base["base"], None, about="the adversarially trained classifier "
                                     "alone (no clean-only classifier was trained for this data set)"))
            if base["magnet"] is not None:
                out.append(Contender("MagNet", base["base"], base["magnet"], magnet=base["magnet"]))
            if base["ddsa"] is not None:
                out.append(Contender("DDSA", base["base"], base["ddsa"]))
            break
    if not out:
        alone = hardened or paper
        out.append(Contender(ALONE, alone.classifier, None, about=f"the {'hardened' if hardened else 'paper'}"
                             " defense's classifier alone, without ISM or detector (no clean-only classifier was "
                             "trained for this data set)"))
    if paper is not None:
        out.append(Contender("paper's recipe", paper.classifier, None, defense=paper))
    if hardened is not None:
        out.append(Contender("hardened", hardened.classifier, None, defense=hardened))
    return out


def _attack(c: Contender, x, y, req: RunRequest) -> torch.Tensor:
    """``x`` attacked against one contender by the app's engine: an ISM defense as the demo attacks it, a baseline
    (differentiable end to end) through its classifier, or through its purifier too when adaptive."""
    if c.defense is not None:
        return attack_image(c.defense, x, y, req)
    return attack_image(None, x, y, req, target=c.whole if (req.threat != "gray-box" and c.whole is not None)
                        else c.classifier)


def compare(rivals: list[Contender], x: torch.Tensor, label: int, classes: list[str], req: RunRequest,
            threats=tuple(THREATS)) -> list[Row]:
    """One ``Row`` per contender and threat model: ``x`` (1, C, H, W) attacked against that contender
    alone (the label ``label`` is the attacker's reference), then read by it."""
    y = torch.tensor([label])
    before = {}
    for c in rivals:
        logits, _, _ = c.answer(x)
        before[c.name] = classes[int(logits.argmax(1)[0])]
    rows = []
    for threat in threats:
        r = req.but(threat=threat)
        for c in rivals:
            t = time.perf_counter()
            x_adv = _attack(c, x, y, r)
            logits, seen, said = c.answer(x_adv)
            p = logits.float().softmax(1)[0]
            k = int(p.argmax())
            correct = k == label
            rows.append(Row(c.name, c.about, threat, to_display(x_adv), float((x_adv - x).abs().max()), said,
                            to_display(seen), classes[k], float(p[k]), correct,
                            correct or said == "rejected the input", before[c.name], time.perf_counter() - t))
    return rows


def summary(rows: list[Row], truth: str) -> str:
    """What the student just saw, in a few sentences, true to these rows."""
    threats = list(dict.fromkeys(r.threat for r in rows))
    held = {t: [r.defense for r in rows if r.threat == t and r.defended] for t in threats}
    n = len({r.defense for r in rows})

    def names(xs):
        return ", ".join(map(in_prose, xs)) if xs else "none"

    def first_up(text):
        return text[:1].upper() + text[1:]

    parts = [f"The true answer is **{truth}**."]
    wrong = [r.defense for r in rows if r.threat == threats[0] and r.clean_prediction != truth]
    if wrong:
        parts.append(f"Before any attack, {names(wrong)} already read it wrong.")
    for t in threats:
        who = "who knows only the classifier" if t == "gray-box" else "who attacks each defense itself"
        if n == 1:
            r = next(r for r in rows if r.threat == t)
            outcome = "held" if r.defended else "was fooled"
            parts.append(f"Against the {t} attacker, {who}, {in_prose(r.defense)} {outcome}: it reads {r.prediction} "
                         f"({r.confidence:.0%}).")
        else:
            parts.append(f"Against the {t} attacker, {who}, {len(held[t])} of {n} kept it ({names(held[t])}).")
    if len(threats) == 2:
        fell = [d for d in held[threats[0]] if d not in held[threats[1]]]
        if fell:
            parts.append(f"{first_up(names(fell))} held only while the attacker ignored {'it' if len(fell) == 1 else 'them'}: "
                         "that is not robustness, and it is how published defenses were broken "
                         "(Athalye et al. 2018; Carlini & Wagner 2017).")
        elif held[threats[1]]:
            parts.append("Nothing that held against the gray-box attacker fell to the adaptive one on this image.")
    parts.append("One image is an anecdote: the Robustness curves tab gives the measured rates.")
    return " ".join(parts)


def table(rows: list[Row]) -> str:
    """The comparison as a Markdown table, one line per contender, both threat models side by side."""
    threats = list(dict.fromkeys(r.threat for r in rows))
    by = {(r.defense, r.threat): r for r in rows}
    nobreak = {t: t.replace("-", "\u2011") for t in threats}   # "white-box" never broken at its hyphen in a narrow column
    head = "| defense | no attack | " + " | ".join(f"{nobreak[t]}: detector | {nobreak[t]}: answer" for t in threats) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(threats)]
    for name in dict.fromkeys(r.defense for r in rows):
        cells = [by[(name, threats[0])].clean_prediction]
        for t in threats:
            r = by[(name, t)]
            mark = "**held**" if r.defended else "fooled"
            cells += [r.detector, f"{mark}: {r.prediction} {r.confidence:.0%}"]
        lines.append(f"| **{name}**: {by[(name, threats[0])].about} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(rows: list[Row], original, truth: str):
    """A grid for the page and for slides: per contender, the attacked image and what its classifier
    read, for each threat model, captioned with the answer."""
    from textwrap import fill

    from matplotlib.figure import Figure

    threats = list(dict.fromkeys(r.threat for r in rows))
    names = list(dict.fromkeys(r.defense for r in rows))
    by = {(r.defense, r.threat): r for r in rows}
    cols = 1 + 2 * len(threats)
    fig = Figure(figsize=(1.75 * cols, 1.65 * len(names) + 0.5))
    axes = fig.subplots(len(names), cols, squeeze=False)
    for i, name in enumerate(names):
        ax = axes[i][0]
        ax.imshow(original)
        ax.set_title(f"original\n({truth})" if i == 0 else "", fontsize=8)
        ax.set_ylabel(name, fontsize=9, rotation=0, ha="right", va="center")
        for j, t in enumerate(threats):
            r = by[(name, t)]
            color = "#1a7f37" if r.defended else "#cf222e"
            a, b = axes[i][1 + 2 * j], axes[i][2 + 2 * j]
            a.imshow(r.attacked)
            a.set_title(f"{t}:\nattacked" if i == 0 else "", fontsize=8)
            a.set_xlabel(f"max pixel change {r.linf * 255:.1f}/255", fontsize=7)
            b.imshow(r.seen)
            b.set_title(f"{t}:\nclassifier read" if i == 0 else "", fontsize=8)
            b.set_xlabel(f"{r.prediction} {r.confidence:.0%}\n{fill(r.detector, 24)}", fontsize=7, color=color)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
