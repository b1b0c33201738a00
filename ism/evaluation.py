"""Evaluation of the defense, its baselines and its stages on a test set (paper Tables 3-4 and more).

Sections (each resumable: finished ones are kept in a JSON state file and skipped next time):

- ``clean``       accuracy of the classifier, the pipeline, MagNet and DDSA; detector false positives.
- ``graybox``     the paper's setting: FGSM / PGD-10 crafted against the protected classifier alone,
                  then the defense applied. The pipeline is attacked through its own classifier;
                  no defense, MagNet and DDSA through the raw-image classifier they protect.
                  Also the detector's AUROC and ROC curve per attack and epsilon.
- ``adaptive``    white-box PGD-10 through each whole defense (``ism.adaptive``: exact gradients
                  through ISM and detector, BPDA + EOT through regeneration), on a spread subset.
- ``latent``      the latent-space attack on regeneration (``ism.latent_attack``).
- ``ablation``    the defense built up stage by stage (``ism.ablation``): clean, gray-box and
                  adaptive PGD-10 at 8/255.
- ``sanity``      measurements that expose a flawed evaluation (more steps, unbounded eps,
                  black-box Square); the checks themselves are in ``ism.sanity``.
- ``regeneration`` PSNR and accuracy of regenerated clean images.

All attacks run in float32 (no autocast), so the gradients the attacker sees are exact.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .ablation import Stage, ablation_stages, variant
from .adaptive import make_adaptive_attack
from .attacks import make_attack
from .baselines import MagNet
from .defense import Defense
from .latent_attack import LatentAttackConfig, latent_attack
from .metrics import auroc, psnr, roc_points


@dataclass
class EvalConfig:
    attacks: list = field(default_factory=lambda: ["fgsm", "pgd"])
    eps: list = field(default_factory=lambda: [8 / 255, 0.1, 0.2, 0.3, 0.4])
    steps: int = 10                 # PGD-10, as in the targets
    batch_size: int = 250
    limit: int | None = None        # N test images (spread over classes); None = all
    adaptive_eps: list = field(default_factory=lambda: [4 / 255, 8 / 255, 16 / 255, 0.2, 0.3, 0.4])
    # Subset sizes: the gray-box sections run on every test image; the white-box sections, which
    # back-propagate through the ISM many times per image, on seeded spread subsets sized so that
    # the whole run fits in about an hour on a 2-core CPU. Raise them on a bigger machine.
    adaptive_images: int | None = 300   # None = all
    eot_iter: int = 2               # EOT samples per step when the defense is randomised (regeneration)
    latent_images: int = 100
    latent_steps: int = 50
    ablation_images: int = 200
    ablation_regen_images: int = 50  # the regeneration stage's adaptive attack (costly: BPDA + EOT)
    sanity_images: int = 100
    sanity_steps: int = 30          # 'more steps' and 'unbounded' checks
    square_queries: int = 300
    regen_images: int = 500         # clean test images regenerated for PSNR / accuracy
    seed: int = 0


def key(attack: str, eps: float) -> str:
    return f"{attack}@{eps:.4f}"


def spread(n: int, k: int | None, seed: int) -> torch.Tensor:
    """k indices spread over range(n) (test sets are sorted by class), sorted; all if k is None."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


class Evaluation:
    """One evaluation run. ``defense`` is the deployed pipeline; ``base`` the raw-image classifier
    MagNet and DDSA protect; ``magnet`` / ``ddsa`` may be None (columns are then left out)."""

    def __init__(self, defense: Defense, images: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
                 state_file: str | Path | None = None, base=None, magnet: MagNet | None = None, ddsa=None,
                 weights_root: str | Path | None = None):
        self.d, self.images, self.labels, self.cfg = defense, images, labels, cfg
        self.base = base if base is not None else defense.classifier
        self.magnet, self.ddsa, self.root = magnet, ddsa, weights_root
        self.dev = next(defense.parameters()).device
        self.state_file = Path(state_file) if state_file else None
        self.res = json.loads(self.state_file.read_text()) if self.state_file and self.state_file.exists() else {}
        self.n = len(labels)
        self.adaptive_idx = spread(self.n, cfg.adaptive_images, cfg.seed)

    # --- helpers ---------------------------------------------------------------------------
    def save(self) -> None:
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps(self.res))

    def batches(self, idx: torch.Tensor | None = None, desc: str = ""):
        idx = torch.arange(self.n) if idx is None else idx
        bs = self.cfg.batch_size
        for i in tqdm(range(0, len(idx), bs), desc=desc, mininterval=5, leave=False):
            j = idx[i:i + bs]
            yield self.images[j].to(self.dev).float() / 255, self.labels[j].to(self.dev)

    @staticmethod
    def correct(model, x, y) -> int:
        with torch.no_grad():
            return (model(x).argmax(1) == y).sum().item()

    def seeded(self, attack):
        torch.manual_seed(self.cfg.seed)
        return attack

    # --- sections --------------------------------------------------------------------------
    def run(self) -> dict:
        for name in ("clean", "graybox", "adaptive", "latent", "ablation", "sanity", "regeneration"):
            getattr(self, name)()
        self.res["config"] = asdict(self.cfg)
        self.save()
        return {k: v for k, v in self.res.items() if not k.startswith("_")}

    def clean(self) -> None:
        if "clean" in self.res:
            return
        t0, c, probs = time.time(), dict.fromkeys(("classifier", "pipeline", "base_classifier", "magnet",
                                                   "magnet_rejected", "ddsa", "flagged"), 0), []
        for x, y in self.batches(desc="clean"):
            c["classifier"] += self.correct(self.d.classifier, x, y)
            c["base_classifier"] += self.correct(self.base, x, y)
            with torch.no_grad():
                logits, det, _ = self.d.predict_all(x)
                c["pipeline"] += (logits.argmax(1) == y).sum().item()
                if self.magnet is not None:
                    lm, sm = self.magnet.outputs(x)
                    c["magnet"] += (lm.argmax(1) == y).sum().item()
                    c["magnet_rejected"] += self.magnet.rejected(x, sm).sum().item()
                if self.ddsa is not None:
                    c["ddsa"] += self.correct(self.ddsa, x, y)
            c["flagged"] += det.attacked.sum().item()
            probs.append(det.probability.cpu())
        r = {k: v / self.n for k, v in c.items()}
        r["false_positive_rate"] = r.pop("flagged")
        if self.magnet is None:
            r.pop("magnet"), r.pop("magnet_rejected")
        if self.ddsa is None:
            r.pop("ddsa")
        self.res["clean"] = {"images": self.n, **r, "seconds": round(time.time() - t0, 1)}
        self.res["_clean_probs"] = torch.cat(probs).tolist()
        self.save()

    def _clean_probs(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        p = torch.tensor(self.res["_clean_probs"])
        return p if idx is None else p[idx]

    def graybox(self) -> None:
        cfg, shared = self.cfg, self.base is self.d.classifier
        for attack in cfg.attacks:
            for eps in cfg.eps:
                k = key(attack, eps)
                if k in self.res.get("graybox", {}):
                    continue
                t0, probs = time.time(), []
                cnt = dict.fromkeys(("no_defense", "defense", "ism_only", "detected", "base_no_defense",
                                     "magnet", "magnet_rejected", "magnet_defended", "ddsa"), 0)
                atk = self.seeded(make_attack(attack, self.d.classifier, eps, steps=cfg.steps, seed=cfg.seed))
                atk_base = atk if shared else make_attack(attack, self.base, eps, steps=cfg.steps, seed=cfg.seed)
                for x, y in self.batches(desc=k):
                    xa = atk(x, y)
                    xb = xa if shared else atk_base(x, y)
                    cnt["no_defense"] += self.correct(self.d.classifier, xa, y)
                    cnt["base_no_defense"] += self.correct(self.base, xb, y)
                    with torch.no_grad():
                        logits, det, purified = self.d.predict_all(xa)
                        cnt["defense"] += (logits.argmax(1) == y).sum().item()
                        cnt["ism_only"] += self.correct(self.d.classifier, purified, y)
                        if self.magnet is not None:
                            lm, sm = self.magnet.outputs(xb)
                            ok = lm.argmax(1) == y
                            rej = self.magnet.rejected(xb, sm)
                            cnt["magnet"] += ok.sum().item()
                            cnt["magnet_rejected"] += rej.sum().item()
                            cnt["magnet_defended"] += (ok | rej).sum().item()
                        if self.ddsa is not None:
                            cnt["ddsa"] += self.correct(self.ddsa, xb, y)
                    cnt["detected"] += det.attacked.sum().item()
                    probs.append(det.probability.cpu())
                row = {m: v / self.n for m, v in cnt.items()}
                if self.magnet is None:
                    for m in ("magnet", "magnet_rejected", "magnet_defended"):
                        row.pop(m)
                if self.ddsa is None:
                    row.pop("ddsa")
                p = torch.cat(probs)
                row["detector_auroc"] = auroc(self._clean_probs(), p)
                row["roc"] = roc_points(self._clean_probs(), p)
                row.update(attack=attack, eps=eps, steps=cfg.steps if attack != "fgsm" else 1,
                           images=self.n, seconds=round(time.time() - t0, 1))
                self.res.setdefault("graybox", {})[k] = row
                self.save()

    def adaptive(self) -> None:
        """PGD-10 through each whole defense at each epsilon, on ``adaptive_images`` images."""
        cfg, idx = self.cfg, self.adaptive_idx
        targets = {"defense": self.d, "no_defense": self.base}
        if self.magnet is not None:
            targets["magnet"] = self.magnet
        if self.ddsa is not None:
            targets["ddsa"] = self.ddsa
        for eps in cfg.adaptive_eps:
            k = key("pgd", eps)
            if k in self.res.get("adaptive", {}):
                continue
            t0, cnt, probs = time.time(), dict.fromkeys(("detected", "magnet_rejected", "magnet_defended"), 0), []
            attacks = {name: self.seeded(make_adaptive_attack(m, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed)
                                         if name == "defense" else make_attack("pgd", m, eps, steps=cfg.steps))
                       for name, m in targets.items()}
            for name in targets:
                cnt[name] = 0
            for x, y in self.batches(idx, desc=f"adaptive {k}"):
                for name, m in targets.items():
                    xa = attacks[name](x, y)
                    with torch.no_grad():
                        if name == "defense":
                            logits, det, _ = self.d.predict_all(xa)
                            cnt["detected"] += det.attacked.sum().item()
                            probs.append(det.probability.cpu())
                        elif name == "magnet":
                            logits, sm = m.outputs(xa)
                        else:
                            logits = m(xa)
                        ok = logits.argmax(1) == y
                        cnt[name] += ok.sum().item()
                        if name == "magnet":
                            rej = m.rejected(xa, sm)
                            cnt["magnet_rejected"] += rej.sum().item()
                            cnt["magnet_defended"] += (ok | rej).sum().item()
            m = len(idx)
            row = {name: v / m for name, v in cnt.items()}
            if self.magnet is None:
                row.pop("magnet_rejected"), row.pop("magnet_defended")
            row["detector_auroc"] = auroc(self._clean_probs(idx), torch.cat(probs))
            row.update(attack="pgd", eps=eps, steps=cfg.steps, eot_iter=attacks["defense"].eot_iter, images=m,
                       seconds=round(time.time() - t0, 1),
                       method="PGD through the whole defense: exact gradients through ISM, detector (soft gate: "
                              "p * clf(final) + (1 - p) * clf(x)) and classifier; BPDA (identity) through "
                              "regeneration with EOT over its restarts. MagNet / DDSA: PGD through "
                              "auto-encoder + classifier (MagNet's detectors are not attacked, so its "
                              "'defended' figure is an upper bound).")
            self.res.setdefault("adaptive", {})[k] = row
            self.save()

    def latent(self) -> None:
        cfg = self.cfg
        idx = self.adaptive_idx[:cfg.latent_images]
        regen = variant(self.d, gate=False, final_input="regenerated")
        for eps in cfg.adaptive_eps:
            k = key("latent", eps)
            if k in self.res.get("latent", {}) or not cfg.latent_images:
                continue
            t0, c = time.time(), dict.fromkeys(("on_manifold_success", "defense", "regenerated_pipeline"), 0)
            torch.manual_seed(cfg.seed)
            for x, y in self.batches(idx, desc=f"latent {k}"):
                xa, success = latent_attack(self.d, x, y, eps, LatentAttackConfig(steps=cfg.latent_steps))
                c["on_manifold_success"] += success.sum().item()
                c["defense"] += self.correct(self.d.predict, xa, y)
                c["regenerated_pipeline"] += self.correct(regen.predict, xa, y)
            self.res.setdefault("latent", {})[k] = {
                **{n: v / len(idx) for n, v in c.items()}, "eps": eps, "images": len(idx),
                "seconds": round(time.time() - t0, 1)}
            self.save()

    def ablation(self) -> None:
        if "ablation" in self.res or not self.root or not self.cfg.ablation_images:
            return
        cfg, eps = self.cfg, 8 / 255
        stages, skipped = ablation_stages(self.d, self.root)
        idx = self.adaptive_idx[:cfg.ablation_images]
        rows, t_all = [], time.time()
        for s in stages:
            t0 = time.time()
            row = {"stage": s.name, "deployed": s.deployed, "images": len(idx)}
            gray = self.seeded(make_attack("pgd", s.classifier, eps, steps=cfg.steps))
            c = dict.fromkeys(("clean", "graybox_pgd10_8/255"), 0)
            for x, y in self.batches(idx, desc=f"ablation {s.name}"):
                c["clean"] += self.correct(_predict(s), x, y)
                c["graybox_pgd10_8/255"] += self.correct(_predict(s), gray(x, y), y)
            row.update({n: v / len(idx) for n, v in c.items()})
            aidx = idx[:cfg.ablation_regen_images] if s.randomised else idx
            adv = self.seeded(make_adaptive_attack(s.model, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed)
                              if isinstance(s.model, Defense) else make_attack("pgd", s.model, eps, steps=cfg.steps))
            ok = sum(self.correct(_predict(s), adv(x, y), y) for x, y in self.batches(aidx, desc="adaptive"))
            row.update({"adaptive_pgd10_8/255": ok / len(aidx), "adaptive_images": len(aidx),
                        "seconds": round(time.time() - t0, 1)})
            rows.append(row)
        self.res["ablation"] = {"rows": rows, "skipped": skipped, "seconds": round(time.time() - t_all, 1)}
        self.save()

    def sanity(self) -> None:
        """Measurements behind ``ism.sanity``'s checks, on ``sanity_images`` images, at 8/255."""
        if "sanity" in self.res or not self.cfg.sanity_images:
            return
        cfg, eps, t0 = self.cfg, 8 / 255, time.time()
        idx = self.adaptive_idx[:cfg.sanity_images]
        runs = {
            f"adaptive PGD-{cfg.steps}": make_adaptive_attack(self.d, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed),
            f"adaptive PGD-{cfg.sanity_steps}": make_adaptive_attack(self.d, eps, steps=cfg.sanity_steps,
                                                                     eot_iter=cfg.eot_iter, seed=cfg.seed),
            f"adaptive PGD-{cfg.sanity_steps}, eps = 1 (unbounded)": make_adaptive_attack(
                self.d, 1.0, steps=cfg.sanity_steps, eot_iter=cfg.eot_iter, alpha=0.05, seed=cfg.seed),
            f"Square, {cfg.square_queries} queries (black-box)": make_attack(
                "square", self.d, eps, steps=max(1, cfg.square_queries // 100), seed=cfg.seed),
        }
        out = {}
        for name, atk in runs.items():
            torch.manual_seed(cfg.seed)
            ok = sum(self.correct(self.d.predict, atk(x, y), y) for x, y in self.batches(idx, desc=name))
            out[name] = ok / len(idx)
        self.res["sanity"] = {"images": len(idx), "eps": eps, "accuracy": out, "seconds": round(time.time() - t0, 1)}
        self.save()

    def regeneration(self) -> None:
        if "regeneration" in self.res or not self.cfg.regen_images:
            return
        t0, idx = time.time(), torch.arange(min(self.cfg.regen_images, self.n))
        ps_x, ps_pur, correct, steps_used = 0.0, 0.0, 0, 0
        for x, y in self.batches(idx, desc="regenerate"):
            *_, last = self.d.regenerate_steps(x)
            with torch.no_grad():
                pur = self.d.purify(x)
            correct += self.correct(self.d.classifier, last.image, y)
            ps_x += psnr(last.image, x).sum().item()
            ps_pur += psnr(last.image, pur).sum().item()
            steps_used += last.step * len(x)
        m, c = len(idx), self.d.config
        self.res["regeneration"] = {"images": m, "steps": c.regen_steps, "restarts": c.regen_restarts,
                                    "psnr_vs_input_db": ps_x / m, "psnr_vs_purified_db": ps_pur / m,
                                    "classifier_accuracy": correct / m, "mean_steps_used": steps_used / m,
                                    "seconds": round(time.time() - t0, 1)}
        self.save()


def _predict(stage: Stage):
    return stage.model.predict if isinstance(stage.model, Defense) else stage.model


def evaluate(defense: Defense, images: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
             state_file: str | Path | None = None, **kw) -> dict:
    """Evaluate ``defense`` on uint8 ``images`` (N, C, H, W) with ``labels`` (N,); see ``Evaluation``."""
    torch.manual_seed(cfg.seed)
    return Evaluation(defense, images, labels, cfg, state_file, **kw).run()
