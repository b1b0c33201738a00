"""Gray-box evaluation of a defense on a test set (the paper's Tables 3-4 setting).

Gray-box: the attack is crafted against the classifier alone with torchattacks, then the whole
defense is applied. Reported per attack and epsilon: accuracy without defense, accuracy of the
pipeline, accuracy on the ISM output alone, the detector's AUROC against clean images and its
detection rate at the calibrated threshold. Clean: classifier and pipeline accuracy, the
detector's false-positive rate. Regeneration: PSNR and accuracy of regenerated clean images.
All attacks run in float32 (no autocast), so the gradients the attacker sees are exact.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .adaptive import make_adaptive_attack
from .attacks import make_attack
from .defense import Defense
from .metrics import auroc, psnr


@dataclass
class EvalConfig:
    attacks: list = field(default_factory=lambda: ["fgsm", "pgd"])
    eps: list = field(default_factory=lambda: [8 / 255, 0.1, 0.2, 0.3, 0.4])
    steps: int = 10                 # PGD-10, as in the targets
    batch_size: int = 250
    limit: int | None = None        # first N test images (spread over classes); None = all
    regen_images: int = 500         # clean test images regenerated for PSNR / accuracy
    adaptive_eps: list = field(default_factory=lambda: [4 / 255, 8 / 255, 16 / 255, 0.2, 0.3, 0.4])
    eot_iter: int = 2               # EOT samples per step when the defense is randomised (regeneration)
    seed: int = 0


def _key(attack: str, eps: float) -> str:
    return f"{attack}@{eps:.4f}"


def evaluate(defense: Defense, images: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
             state_file: str | Path | None = None) -> dict:
    """Evaluate ``defense`` on uint8 ``images`` (N, C, H, W) with ``labels`` (N,).

    Resumable: finished parts are written to ``state_file`` (JSON) and skipped on the next call.
    """
    torch.manual_seed(cfg.seed)
    dev = next(defense.parameters()).device
    res = json.loads(Path(state_file).read_text()) if state_file and Path(state_file).exists() else {}
    n, bs = len(labels), cfg.batch_size

    def batches():
        for i in range(0, n, bs):
            yield images[i:i + bs].to(dev).float() / 255, labels[i:i + bs].to(dev)

    def save():
        if state_file:
            Path(state_file).parent.mkdir(parents=True, exist_ok=True)
            Path(state_file).write_text(json.dumps(res, indent=1))

    if "clean" not in res:
        t0, c_clf, c_pipe, flags, probs = time.time(), 0, 0, 0, []
        for x, y in tqdm(batches(), total=-(-n // bs), desc="clean", mininterval=5):
            with torch.no_grad():
                c_clf += (defense.classifier(x).argmax(1) == y).sum().item()
                c_pipe += (defense.predict(x).argmax(1) == y).sum().item()
                det = defense.detection(x)
            flags += det.attacked.sum().item()
            probs.append(det.probability.cpu())
        res["clean"] = {"images": n, "classifier": c_clf / n, "pipeline": c_pipe / n,
                        "false_positive_rate": flags / n, "seconds": round(time.time() - t0, 1)}
        res["_clean_probs"] = torch.cat(probs).tolist()
        save()
    clean_probs = torch.tensor(res["_clean_probs"])

    for attack in cfg.attacks:
        for eps in cfg.eps:
            k = _key(attack, eps)
            if k in res.get("graybox", {}):
                continue
            t0, cnt, probs = time.time(), {"no_defense": 0, "defense": 0, "ism_only": 0, "detected": 0}, []
            atk = make_attack(attack, defense.classifier, eps, steps=cfg.steps, seed=cfg.seed)
            for x, y in tqdm(batches(), total=-(-n // bs), desc=k, mininterval=5):
                xa = atk(x, y)
                with torch.no_grad():
                    cnt["no_defense"] += (defense.classifier(xa).argmax(1) == y).sum().item()
                    cnt["defense"] += (defense.predict(xa).argmax(1) == y).sum().item()
                    cnt["ism_only"] += (defense.classifier(defense.purify(xa)).argmax(1) == y).sum().item()
                    det = defense.detection(xa)
                cnt["detected"] += det.attacked.sum().item()
                probs.append(det.probability.cpu())
            row = {m: v / n for m, v in cnt.items()}
            row["detector_auroc"] = auroc(clean_probs, torch.cat(probs))
            row.update(attack=attack, eps=eps, steps=cfg.steps if attack != "fgsm" else 1,
                       seconds=round(time.time() - t0, 1))
            res.setdefault("graybox", {})[k] = row
            save()

    # adaptive white-box: PGD-10 through the whole defense (exact gradients through ISM and detector,
    # soft gating, BPDA through regeneration, EOT over its restarts when it is in the pipeline)
    eot = cfg.eot_iter if defense.config.final_input != "purified" else 1
    for eps in cfg.adaptive_eps:
        k = _key("pgd", eps)
        if k in res.get("adaptive", {}):
            continue
        t0, correct, detected = time.time(), 0, 0
        atk = make_adaptive_attack(defense, eps, steps=cfg.steps, eot_iter=eot, seed=cfg.seed)
        for x, y in tqdm(batches(), total=-(-n // bs), desc=f"adaptive {k}", mininterval=5):
            xa = atk(x, y)
            with torch.no_grad():
                correct += (defense.predict(xa).argmax(1) == y).sum().item()
                detected += defense.detection(xa).attacked.sum().item()
        res.setdefault("adaptive", {})[k] = {
            "attack": "pgd", "eps": eps, "steps": cfg.steps, "eot_iter": eot, "defense": correct / n,
            "detected": detected / n, "seconds": round(time.time() - t0, 1),
            "method": "PGD on p*clf(ISM(x)) + (1-p)*clf(x), p = detector probability; BPDA (identity) "
                      "through regeneration; EOT over its restarts"}
        save()

    if "regeneration" not in res and cfg.regen_images:
        t0, m = time.time(), min(cfg.regen_images, n)
        ps_x, ps_pur, correct, steps_used = 0.0, 0.0, 0, 0
        for i in tqdm(range(0, m, bs), desc="regenerate", mininterval=5):
            x = images[i:min(i + bs, m)].to(dev).float() / 255
            y = labels[i:min(i + bs, m)].to(dev)
            *_, last = defense.regenerate_steps(x)
            with torch.no_grad():
                pur = defense.purify(x)
                correct += (defense.classifier(last.image).argmax(1) == y).sum().item()
            ps_x += psnr(last.image, x).sum().item()
            ps_pur += psnr(last.image, pur).sum().item()
            steps_used += last.step * len(x)
        c = defense.config
        res["regeneration"] = {"images": m, "steps": c.regen_steps, "restarts": c.regen_restarts,
                               "psnr_vs_input_db": ps_x / m, "psnr_vs_purified_db": ps_pur / m,
                               "classifier_accuracy": correct / m, "mean_steps_used": steps_used / m,
                               "seconds": round(time.time() - t0, 1)}
        save()
    res["config"] = asdict(cfg)
    save()
    return {k: v for k, v in res.items() if not k.startswith("_")}


def markdown(res: dict, title: str, command: str) -> str:
    c = res["clean"]
    lines = [f"# {title}", "", f"Measured by `{command}` on {c['images']} test images.", "",
             "## Clean", "", "| classifier alone | full pipeline | detector false-positive rate |", "|---|---|---|",
             f"| {c['classifier']:.4f} | {c['pipeline']:.4f} | {c['false_positive_rate']:.4f} |", "",
             "## Gray-box (attack crafted against the classifier alone, then the defense applied)", "",
             "| attack | eps | no defense | defense (pipeline) | ISM output only | detector AUROC | detected |",
             "|---|---|---|---|---|---|---|"]
    for r in res.get("graybox", {}).values():
        name = r["attack"].upper() + (f"-{r['steps']}" if r["attack"] != "fgsm" else "")
        lines.append(f"| {name} | {r['eps']:.4f} ({r['eps'] * 255:.0f}/255) | {r['no_defense']:.4f} | "
                     f"{r['defense']:.4f} | {r['ism_only']:.4f} | {r['detector_auroc']:.4f} | {r['detected']:.4f} |")
    if res.get("adaptive"):
        lines += ["", "## Adaptive white-box (the attacker attacks the whole defense)", "",
                  "PGD-10 with exact gradients through the ISM and the detector (soft gate), BPDA through "
                  "regeneration, EOT over its restarts. The pipeline is then run as usual (hard gate).", "",
                  "| eps | defense (pipeline) | detected | gray-box PGD-10, same eps |", "|---|---|---|---|"]
        for k, r in res["adaptive"].items():
            gray = res.get("graybox", {}).get(k, {}).get("defense")
            lines.append(f"| {r['eps']:.4f} ({r['eps'] * 255:.0f}/255) | {r['defense']:.4f} | {r['detected']:.4f} | "
                         + (f"{gray:.4f} |" if gray is not None else "– |"))
    if "regeneration" in res:
        g = res["regeneration"]
        lines += ["", "## Regeneration of clean test images", "",
                  f"{g['images']} images, {g['steps']} steps x {g['restarts']} restarts: PSNR vs input "
                  f"{g['psnr_vs_input_db']:.2f} dB, vs ISM output {g['psnr_vs_purified_db']:.2f} dB, classifier "
                  f"accuracy {g['classifier_accuracy']:.4f}, mean steps used {g['mean_steps_used']:.1f}."]
    lines += ["", "Gray-box figures assume the attacker does not know the defense; the adaptive table is "
              "what an attacker who knows it achieves."]
    return "\n".join(lines) + "\n"
