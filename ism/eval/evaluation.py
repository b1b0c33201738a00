"""Evaluation of the defense, its baselines and its stages on a test set (paper Tables 3-4 and more).

Sections (each resumable: finished ones are kept in a JSON state file and skipped next time):

- ``clean``       accuracy of the classifier, the pipeline, MagNet and DDSA; detector false positives.
- ``graybox``     the paper's setting: FGSM / PGD-10 crafted against the protected classifier alone,
                  then the defense applied. The pipeline is attacked through its own classifier;
                  no defense, MagNet and DDSA through the raw-image classifier they protect.
                  Also the detector's AUROC and ROC curve per attack and epsilon.
- ``adaptive``    white-box PGD-10 through each whole defense (``ism.attacks.adaptive``: exact gradients
                  through ISM and detector, BPDA + EOT through regeneration), on a spread subset.
- ``latent``      the latent-space attack on regeneration (``ism.attacks.latent``).
- ``ablation``    the defense built up stage by stage (``ism.eval.ablation``): clean, gray-box and
                  adaptive PGD-10 at 8/255.
- ``sanity``      measurements that expose a flawed evaluation (more steps, unbounded eps,
                  black-box Square); the checks themselves are in ``ism.eval.sanity``.
- ``regeneration`` PSNR and accuracy of regenerated clean images.
- ``autoattack`` AutoAttack (Croce & Hein 2020, torchattacks' standard version: APGD-CE, APGD-T,
                  FAB-T, Square 5,000 queries) at L-inf 8/255 through the deployed pipeline and on the
                  raw-image classifier alone, on ``autoattack_images`` images (RobustBench's measure).

All attacks run in float32 (no autocast), so the gradients the attacker sees are exact.

Every section runs batch by batch through ``Evaluation.tally``: the random state of each batch is
seeded from its index, and under ``torchrun`` each process takes every N-th batch and the results
are merged in batch order, so one process and N processes give the same numbers.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ism import distributed
from ism.attacks.adaptive import AdaptiveTarget, make_adaptive_attack, make_refusal_attack
from ism.attacks.latent import LatentAttackConfig, latent_attack
from ism.attacks.standard import make_attack
from ism.data.subsets import spread
from ism.defense import Defense
from ism.eval.ablation import Stage, ablation_stages, variant
from ism.eval.keys import EPS_8, Ablation, Cell, Sanity
from ism.eval.metrics import auroc, psnr, roc_points
from ism.models.baselines import MagNet


@dataclass
class EvalConfig:
    attacks: list = field(default_factory=lambda: ["fgsm", "pgd"])
    eps: list = field(default_factory=lambda: [8 / 255, 0.1, 0.2, 0.3, 0.4])
    steps: int = 10                 # PGD-10, as in the targets
    batch_size: int = 250
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
    autoattack_images: int = 500    # AutoAttack (standard) subset; slow on a CPU, minutes on a GPU
    autoattack_eps: float = 8 / 255
    refusal_eps: list = field(default_factory=lambda: [8 / 255])   # the refusing defense (``refusal``), on the
    seed: int = 0                                                   # adaptive subset


NOISE_255 = (1, 2)   # the refusal section's random noise, in /255

SECTIONS = ("clean", "graybox", "adaptive", "latent", "ablation", "sanity", "regeneration", "autoattack", "refusal")


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
        res = None
        if distributed.is_main():
            res = json.loads(self.state_file.read_text()) if self.state_file and self.state_file.exists() else {}
        self.res = distributed.broadcast(res)   # every process resumes from the same state
        self.n = len(labels)
        self.adaptive_idx = spread(self.n, cfg.adaptive_images, cfg.seed)

    def subset(self, k: int | None) -> torch.Tensor:
        """A seeded spread subset of ``k`` images, within the adaptive subset (test sets are sorted by
        class: a plain prefix of a sorted index list would hold the first classes only)."""
        k = len(self.adaptive_idx) if k is None else min(k, len(self.adaptive_idx))
        return self.adaptive_idx[spread(len(self.adaptive_idx), k, self.cfg.seed + 1)]

    # --- helpers ---------------------------------------------------------------------------
    def save(self) -> None:
        if self.state_file and distributed.is_main():
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.res))
            tmp.replace(self.state_file)

    def tally(self, idx: torch.Tensor | None, desc: str, fn) -> dict:
        """Apply ``fn(x, y) -> {name: number or 1-D tensor}`` to every batch of ``idx`` (all images if
        None) and merge: numbers are summed, tensors concatenated, in batch order.

        Batch ``b`` runs with the random state seeded from ``(seed, b)``. Under torchrun this
        process computes batches ``rank, rank + world, ...`` and the parts are gathered, so the
        merged result is the one a single process gets.
        """
        idx = torch.arange(self.n) if idx is None else idx
        bs, world, rank = self.cfg.batch_size, distributed.world(), distributed.rank()
        starts = list(range(0, len(idx), bs))
        mine = {}
        for b in tqdm(range(rank, len(starts), world), desc=desc, mininterval=5, leave=False,
                      disable=not distributed.is_main()):
            j = idx[starts[b]:starts[b] + bs]
            torch.manual_seed(self.cfg.seed * 1_000_003 + b)
            out = fn(self.images[j].to(self.dev).float() / 255, self.labels[j].to(self.dev))
            mine[b] = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        parts = {}
        for p in distributed.gather(mine):
            parts.update(p)
        merged: dict = {}
        for b in sorted(parts):
            for k, v in parts[b].items():
                if isinstance(v, torch.Tensor):
                    merged.setdefault(k, []).append(v)
                else:
                    merged[k] = merged.get(k, 0) + v
        return {k: torch.cat(v) if isinstance(v, list) else v for k, v in merged.items()}

    @staticmethod
    def correct(model, x, y) -> int:
        with torch.no_grad():
            return (model(x).argmax(1) == y).sum().item()

    # --- sections --------------------------------------------------------------------------
    def run(self, sections=SECTIONS) -> dict:
        for name in sections:
            if name not in SECTIONS:
                raise ValueError(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        for name in SECTIONS:
            if name in sections or name == "clean":   # every other section needs the clean pass
                getattr(self, name)()
        self.res["config"] = asdict(self.cfg)
        self.save()
        return {k: v for k, v in self.res.items() if not k.startswith("_")}

    def clean(self) -> None:
        if "clean" in self.res:
            return
        t0 = time.time()

        def batch(x, y):
            c = {"classifier": self.correct(self.d.classifier, x, y), "base_classifier": self.correct(self.base, x, y)}
            with torch.no_grad():
                logits, det, purified = self.d.predict_all(x)
                c["pipeline"] = (logits.argmax(1) == y).sum().item()
                # the clean pass: how far the purifier moves a clean picture, and how it is read then
                c["purified_psnr_db"] = psnr(purified, x).clamp(max=99).sum().item()
                c["classifier_on_purified"] = self.correct(self.d.classifier, purified, y)
                if self.magnet is not None:
                    lm, sm = self.magnet.outputs(x)
                    c["magnet"] = (lm.argmax(1) == y).sum().item()
                    c["magnet_rejected"] = self.magnet.rejected(x, sm).sum().item()
                if self.ddsa is not None:
                    c["ddsa"] = self.correct(self.ddsa, x, y)
            c["flagged"], c["probs"] = det.attacked.sum().item(), det.probability.float()
            return c

        c = self.tally(None, "clean", batch)
        probs = c.pop("probs")
        r = {k: v / self.n for k, v in c.items()}
        r["false_positive_rate"] = r.pop("flagged")
        self.res["clean"] = {"images": self.n, **r, "seconds": round(time.time() - t0, 1)}
        self.res["_clean_probs"] = probs.tolist()
        self.save()

    def _clean_probs(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        p = torch.tensor(self.res["_clean_probs"])
        return p if idx is None else p[idx]

    def graybox(self) -> None:
        cfg, shared = self.cfg, self.base is self.d.classifier
        for attack in cfg.attacks:
            for eps in cfg.eps:
                k = str(Cell(attack, eps))
                if k in self.res.get("graybox", {}):
                    continue
                t0 = time.time()
                atk = make_attack(attack, self.d.classifier, eps, steps=cfg.steps, seed=cfg.seed)
                atk_base = atk if shared else make_attack(attack, self.base, eps, steps=cfg.steps, seed=cfg.seed)
                story = attack == "pgd" and abs(eps - EPS_8) < 1e-9   # the app's default run

                def batch(x, y):
                    xa = atk(x, y)
                    xb = xa if shared else atk_base(x, y)
                    c = {"no_defense": self.correct(self.d.classifier, xa, y),
                         "base_no_defense": self.correct(self.base, xb, y)}
                    with torch.no_grad():
                        logits, det, purified = self.d.predict_all(xa)
                        right = logits.argmax(1) == y
                        c["defense"] = right.sum().item()
                        c["ism_only"] = self.correct(self.d.classifier, purified, y)
                        # the story a visitor should see: of the images the attack fools (the classifier is
                        # right on the clean image, wrong on the attacked one), how many the detector catches
                        # and the pipeline answers right again
                        fooled = (self.d.classifier(x).argmax(1) == y) & (self.d.classifier(xa).argmax(1) != y)
                        c.update(fooled=fooled.sum().item(), fooled_caught=(fooled & det.attacked).sum().item(),
                                 fooled_restored=(fooled & right).sum().item())
                        if story:   # the largest counter-change: how much the purifier changes its input
                            c["counter_change"] = (purified.float() - xa.float()).abs().flatten(1).amax(1)
                        if story and fooled.any():   # purified vs regenerated, read and seen on the fooled images
                            xf, yf, pf = x[fooled], y[fooled], purified[fooled]
                            c["fooled_purified_right"] = self.correct(self.d.classifier, pf, yf)
                            with torch.enable_grad():
                                *_, last = self.d.regenerate_steps(xa[fooled])
                            c["fooled_regenerated_right"] = self.correct(self.d.classifier, last.image, yf)
                            for name, img in (("attacked", xa[fooled]), ("purified", pf), ("regenerated", last.image)):
                                c[f"psnr_{name}"] = psnr(img, xf)
                        if self.magnet is not None:
                            lm, sm = self.magnet.outputs(xb)
                            ok, rej = lm.argmax(1) == y, self.magnet.rejected(xb, sm)
                            c.update(magnet=ok.sum().item(), magnet_rejected=rej.sum().item(),
                                     magnet_defended=(ok | rej).sum().item())
                        if self.ddsa is not None:
                            c["ddsa"] = self.correct(self.ddsa, xb, y)
                    c["detected"], c["probs"] = det.attacked.sum().item(), det.probability.float()
                    return c

                cnt = self.tally(None, k, batch)
                p = cnt.pop("probs")
                fooled = cnt.pop("fooled")
                caught, restored = cnt.pop("fooled_caught"), cnt.pop("fooled_restored")
                read = {k: cnt.pop(f"fooled_{k}_right", 0) for k in ("purified", "regenerated")}
                eye = {k: cnt.pop(k) for k in ("counter_change", "psnr_attacked", "psnr_purified", "psnr_regenerated")
                       if k in cnt}
                row = {m: v / self.n for m, v in cnt.items()}
                row.update(fooled=fooled / self.n, caught=caught / fooled if fooled else None,
                           restored=restored / fooled if fooled else None)
                if story and fooled:   # of the fooled images, read right on the ISM output / on the regenerated one
                    row.update(restored_purified=read["purified"] / fooled, restored_regenerated=read["regenerated"] / fooled)
                    row["pictures"] = pictures_row(eye)
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
            k = str(Cell("pgd", eps))
            if k in self.res.get("adaptive", {}):
                continue
            t0 = time.time()
            attacks = {name: make_adaptive_attack(m, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed)
                       if name == "defense" else make_attack("pgd", m, eps, steps=cfg.steps)
                       for name, m in targets.items()}

            def batch(x, y):
                c = {}
                for name, m in targets.items():
                    xa = attacks[name](x, y)
                    with torch.no_grad():
                        if name == "defense":
                            logits, det, _ = self.d.predict_all(xa)
                            c["detected"], c["probs"] = det.attacked.sum().item(), det.probability.float()
                        elif name == "magnet":
                            logits, sm = m.outputs(xa)
                        else:
                            logits = m(xa)
                        ok = logits.argmax(1) == y
                        c[name] = ok.sum().item()
                        if name == "magnet":
                            rej = m.rejected(xa, sm)
                            c["magnet_rejected"], c["magnet_defended"] = rej.sum().item(), (ok | rej).sum().item()
                return c

            cnt = self.tally(idx, f"adaptive {k}", batch)
            probs = cnt.pop("probs")
            m = len(idx)
            row = {name: v / m for name, v in cnt.items()}
            row["detector_auroc"] = auroc(self._clean_probs(idx), probs)
            row.update(attack="pgd", eps=eps, steps=cfg.steps, eot_iter=attacks["defense"].eot_iter, images=m,
                       seconds=round(time.time() - t0, 1),
                       method=f"PGD through the whole defense: {through_words(self.d)}; BPDA (identity) through "
                              "regeneration with EOT over its restarts. MagNet / DDSA: PGD through "
                              "auto-encoder + classifier (MagNet's detectors are not attacked, so its "
                              "'defended' figure is an upper bound).")
            self.res.setdefault("adaptive", {})[k] = row
            self.save()

    def refusal(self) -> None:
        """What refusing every picture the detector flags would give (the paper's third strategy, detection),
        on the adaptive subset: clean pictures answered right and refused; against gray-box PGD-10 (the attacker
        targets the classifier alone) and against an adaptive PGD-10 that knows about the refusal and must slip
        past the detector too (``make_refusal_attack``), the share stopped: refused or answered right; and what it
        would cost beyond clean test pictures: the share refused of the same pictures carrying a faint random noise
        (each pixel moved by a whole step of -1, 0 or +1 /255; of up to +-2/255)."""
        cfg, idx = self.cfg, self.adaptive_idx
        for eps in cfg.refusal_eps:
            k = str(Cell("pgd", eps))
            if k in self.res.get("refusal", {}):
                continue
            t0 = time.time()
            gray = make_attack("pgd", self.d.classifier, eps, steps=cfg.steps)
            aware = make_refusal_attack(self.d, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed)

            def batch(x, y):
                c = {}
                for e in NOISE_255:    # the cost: a harmless random noise of up to +-e/255 on every pixel, on the
                    steps = torch.randint(-e, e + 1, x.shape, device=x.device)   # 1/255 grid of any picture file
                    noisy = ((x * 255).round() + steps).clamp(0, 255) / 255
                    with torch.no_grad():
                        c[f"noise{e}_refused"] = self.d.detection(noisy).attacked.sum().item()
                for name, xa in (("clean", x), ("graybox", gray(x, y)), ("adaptive", aware(x, y))):
                    with torch.no_grad():
                        logits, det, _ = self.d.predict_all(xa)
                    right, refused = logits.argmax(1) == y, det.attacked
                    c[f"{name}_refused"] = refused.sum().item()
                    c[f"{name}_right_let_through"] = (right & ~refused).sum().item()
                    c[f"{name}_stopped"] = (right | refused).sum().item()
                return c

            c = self.tally(idx, f"refusal {k}", batch)
            m = len(idx)
            self.res.setdefault("refusal", {})[k] = {
                **{n: v / m for n, v in c.items() if not n.startswith("clean_stopped")}, "eps": eps,
                "steps": cfg.steps, "eot_iter": aware.eot_iter, "images": m, "seconds": round(time.time() - t0, 1),
                "method": "The defense refuses (gives no answer to) every picture its detector flags. Stopped: "
                          "refused, or let through and answered right. Gray-box: PGD against the classifier alone; "
                          "adaptive: PGD against the refusing defense (ISM, detector and classifier, exact "
                          "gradients; the detector's probability moved to 1/2 at its threshold, a refused picture "
                          "counting as the attack failing), so it must fool the classifier and slip past the "
                          "detector at once. Noise: the share refused of the same clean pictures, each pixel moved by a "
                          "random whole step of -1, 0 or +1 /255 (of -2 to +2)."}
            self.save()

    def latent(self) -> None:
        cfg = self.cfg
        idx = self.subset(cfg.latent_images)
        regen = variant(self.d, gate=False, final_input="regenerated")
        for eps in cfg.adaptive_eps:
            k = str(Cell("latent", eps))
            if k in self.res.get("latent", {}) or not cfg.latent_images:
                continue
            t0 = time.time()

            def batch(x, y):
                xa, success = latent_attack(self.d, x, y, eps, LatentAttackConfig(steps=cfg.latent_steps))
                return {"on_manifold_success": success.sum().item(), "defense": self.correct(self.d.predict, xa, y),
                        "regenerated_pipeline": self.correct(regen.predict, xa, y)}

            c = self.tally(idx, f"latent {k}", batch)
            self.res.setdefault("latent", {})[k] = {
                **{n: v / len(idx) for n, v in c.items()}, "eps": eps, "images": len(idx),
                "seconds": round(time.time() - t0, 1)}
            self.save()

    def ablation(self) -> None:
        if "ablation" in self.res or not self.root or not self.cfg.ablation_images:
            return
        cfg, eps = self.cfg, 8 / 255
        stages, skipped = ablation_stages(self.d, self.root)
        idx = self.subset(cfg.ablation_images)
        rows, t_all = [], time.time()
        for s in stages:
            t0 = time.time()
            row = {"stage": s.name, "deployed": s.deployed, "images": len(idx)}
            gray = make_attack("pgd", s.classifier, eps, steps=cfg.steps)
            c = self.tally(idx, f"ablation {s.name}", lambda x, y: {
                Ablation.CLEAN.value: self.correct(_predict(s), x, y),
                Ablation.GRAYBOX.value: self.correct(_predict(s), gray(x, y), y)})
            row.update({n: v / len(idx) for n, v in c.items()})
            aidx = idx[spread(len(idx), cfg.ablation_regen_images, cfg.seed)] if s.randomised else idx
            adv = (make_adaptive_attack(s.model, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed)
                   if isinstance(s.model, Defense) else make_attack("pgd", s.model, eps, steps=cfg.steps))
            ok = self.tally(aidx, "adaptive", lambda x, y: {"ok": self.correct(_predict(s), adv(x, y), y)})["ok"]
            row.update({Ablation.ADAPTIVE.value: ok / len(aidx), "adaptive_images": len(aidx),
                        "seconds": round(time.time() - t0, 1)})
            rows.append(row)
        self.res["ablation"] = {"rows": rows, "skipped": skipped, "seconds": round(time.time() - t_all, 1)}
        self.save()

    def sanity(self) -> None:
        """Measurements behind ``ism.eval.sanity``'s checks, on ``sanity_images`` images, at 8/255."""
        if "sanity" in self.res or not self.cfg.sanity_images:
            return
        cfg, eps, t0 = self.cfg, 8 / 255, time.time()
        idx = self.subset(cfg.sanity_images)
        runs = {
            Sanity.PGD: make_adaptive_attack(self.d, eps, steps=cfg.steps, eot_iter=cfg.eot_iter, seed=cfg.seed),
            Sanity.PGD_MORE_STEPS: make_adaptive_attack(self.d, eps, steps=cfg.sanity_steps, eot_iter=cfg.eot_iter,
                                                        seed=cfg.seed),
            Sanity.PGD_UNBOUNDED: make_adaptive_attack(self.d, 1.0, steps=cfg.sanity_steps, eot_iter=cfg.eot_iter,
                                                       alpha=0.05, seed=cfg.seed),
            Sanity.SQUARE: make_attack("square", self.d, eps, steps=max(1, cfg.square_queries // 100), seed=cfg.seed),
        }
        out, labels = {}, {}
        for k, atk in runs.items():
            labels[k.value] = k.label(cfg.steps, cfg.sanity_steps, cfg.square_queries)
            ok = self.tally(idx, labels[k.value], lambda x, y: {"ok": self.correct(self.d.predict, atk(x, y), y)})["ok"]
            out[k.value] = ok / len(idx)
        self.res["sanity"] = {"images": len(idx), "eps": eps, "accuracy": out, "labels": labels, "seconds": round(time.time() - t0, 1)}
        self.save()

    def regeneration(self) -> None:
        if "regeneration" in self.res or not self.cfg.regen_images:
            return
        t0, idx = time.time(), spread(self.n, self.cfg.regen_images, self.cfg.seed)

        def batch(x, y):
            *_, last = self.d.regenerate_steps(x)
            with torch.no_grad():
                pur = self.d.purify(x)
            return {"correct": self.correct(self.d.classifier, last.image, y),
                    "psnr_x": psnr(last.image, x).sum().item(), "psnr_pur": psnr(last.image, pur).sum().item(),
                    "steps": last.step * len(x)}

        t = self.tally(idx, "regenerate", batch)
        m, c = len(idx), self.d.config
        self.res["regeneration"] = {"images": m, "steps": c.regen_steps, "restarts": c.regen_restarts,
                                    "psnr_vs_input_db": t["psnr_x"] / m, "psnr_vs_purified_db": t["psnr_pur"] / m,
                                    "classifier_accuracy": t["correct"] / m, "mean_steps_used": t["steps"] / m,
                                    "seconds": round(time.time() - t0, 1)}
        self.save()

    def autoattack(self) -> None:
        """AutoAttack (standard, L-inf) on a spread subset: the deployed pipeline end to end (exact
        gradients through ISM, detector gate and classifier; ``final_input`` must be differentiable,
        i.e. "purified") and the raw-image classifier alone, as RobustBench measures classifiers. Through a
        counter-change (its signed steps have no useful gradient) the attacks see the adaptive section's target:
        the pipeline's answers, the gradient of the classifier on ISM(x) and x (``counter_guided``)."""
        cfg = self.cfg
        if "autoattack" in self.res:
            self.res["autoattack"].setdefault("method", through_words(self.d))   # rows measured before it was recorded
            return
        if not cfg.autoattack_images:
            return
        if self.d.config.final_input != "purified":
            raise ValueError("autoattack needs a differentiable pipeline (final_input='purified'); "
                             "use the adaptive section (BPDA + EOT) for regeneration")
        idx = spread(self.n, cfg.autoattack_images, cfg.seed)
        n_classes = len(self.d.classes)
        row = {"images": len(idx), "eps": cfg.autoattack_eps, "norm": "Linf",
               "version": "standard" if n_classes >= 4 else "APGD-CE + Square (two classes)",
               "method": through_words(self.d)}
        part = self.res.get("autoattack_part")      # a half finished before an interruption: kept
        if part and all(part.get(k) == row[k] for k in ("images", "eps")):
            row = part
        through = AdaptiveTarget(self.d, cfg.seed) if self.d.config.counter_bound else self.d
        for name, model in (("defense", through), ("no_defense", self.base)):
            if name in row:
                continue
            t1 = time.time()
            atk = autoattack(model, cfg.autoattack_eps, n_classes, cfg.seed)
            ok = self.tally(idx, f"autoattack {name}", lambda x, y: {
                "clean": self.correct(model, x, y), "robust": self.correct(model, atk(x, y), y)})
            row[name] = ok["robust"] / len(idx)
            row[f"{name}_clean"] = ok["clean"] / len(idx)
            row["seconds"] = round(row.get("seconds", 0) + time.time() - t1, 1)
            self.res["autoattack_part"] = row       # each half saved as it ends (AutoAttack is slow on a CPU)
            self.save()
        self.res["autoattack"] = self.res.pop("autoattack_part")
        self.save()


def through_words(d: Defense) -> str:
    """How an attacker's gradient goes through defense ``d``, in the words of the reports (``AdaptiveTarget``)."""
    parts = "ISM, the detector's soft gate (p * clf(final) + (1 - p) * clf(x)) and" if d.config.gate else "ISM and"
    if d.config.counter_bound:
        return (f"exact gradients through {parts} the classifier; the counter-change's signed steps have no useful "
                "gradient, so the attacker reads the pipeline's answers and follows the classifier's gradient on "
                "ISM(x) and on x (ism/attacks/adaptive.py: counter_guided)")
    return f"exact gradients through {parts} the classifier"


def autoattack(model, eps: float, n_classes: int, seed: int = 0):
    """AutoAttack's standard ensemble (torchattacks), L-inf ``eps``. Its targeted attacks' DLR loss reads the third
    and fourth largest logits, so on two classes (CelebA's Male) it raises IndexError: there the two of its attacks
    that apply, APGD-CE (100 steps) and Square (5,000 queries), as RobustBench runs binary tasks' untargeted part."""
    import torchattacks

    if n_classes >= 4:
        return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed)
    return torchattacks.MultiAttack([torchattacks.APGD(model, eps=eps, steps=100, seed=seed, loss="ce"),
                                     torchattacks.Square(model, eps=eps, n_queries=5000, seed=seed)])


def pictures_row(eye: dict) -> dict:
    """What the eye sees on the fooled pictures (issue "the pictures tell the truth"): mean PSNR to the original of
    the attacked, purified and regenerated pictures, the share of purified / regenerated pictures closer to the
    original than the attacked one, and the largest change the purifier made to any attacked input (/255)."""
    att = eye["psnr_attacked"]
    row = {f"psnr_{k}_db": round(eye[f"psnr_{k}"].mean().item(), 2) for k in ("attacked", "purified", "regenerated")}
    row.update({f"closer_{k}": round((eye[f"psnr_{k}"] > att).float().mean().item(), 3)
                for k in ("purified", "regenerated")})
    row["largest_counter_change_255"] = round(eye["counter_change"].max().item() * 255, 2)
    return row


def _predict(stage: Stage):
    return stage.model.predict if isinstance(stage.model, Defense) else stage.model


def evaluate(defense: Defense, images: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
             state_file: str | Path | None = None, sections=SECTIONS, **kw) -> dict:
    """Evaluate ``defense`` on uint8 ``images`` (N, C, H, W) with ``labels`` (N,); see ``Evaluation``."""
    torch.manual_seed(cfg.seed)
    return Evaluation(defense, images, labels, cfg, state_file, **kw).run(sections)
