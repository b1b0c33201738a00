"""Evaluation results as Markdown tables and matplotlib figures (results/<dataset>.md, *.png)."""
from __future__ import annotations

from pathlib import Path

from ism.eval.curves import ALONE
from ism.eval.keys import Ablation
from ism.eval.sanity import sanity_checks

# Paper Table 3 (CIFAR-10): attack level -> (no defence, proposed, MagNet, DDSA). The paper does not
# name the attack behind the table.
PAPER_TABLE3 = {0.2: (0.482, 0.936, 0.792, 0.895), 0.3: (0.374, 0.894, 0.688, 0.853),
                0.4: (0.268, 0.871, 0.564, 0.816)}
# Table 4 (CelebA): (attack, eps) -> no defence, CelebANet, proposed
PAPER_TABLE4 = {("fgsm", 0.3): (0.624, 0.912, 0.927), ("pgd", 0.3): (0.597, 0.923, 0.936)}
PAPER = {
    "cifar10": ("Table 3", "paper: no def. / proposed / MagNet / DDSA",
                "Paper: Table 3 of Haque & Kang (attack not named).",
                lambda attack, eps: PAPER_TABLE3.get(round(eps, 4))),
    "celeba": ("Table 4", "paper: no def. / CelebANet / proposed",
               "Paper: Table 4 of Haque & Kang (CelebA at 512x512, 2,000 test images, attribute not named); "
               "here the Male attribute at 64x64.",
               lambda attack, eps: PAPER_TABLE4.get((attack, round(eps, 4)))),
}


def _eps(e: float) -> str:
    return f"{e:.4f} ({e * 255:.0f}/255)"


def _magnet(r: dict) -> str:
    """MagNet's cell: reformer accuracy / accuracy counting a rejected input as defended."""
    return f"{_f(r.get('magnet'))} / {_f(r.get('magnet_defended'))}" if "magnet" in r else "–"


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _name(r: dict) -> str:
    return r["attack"].upper() + (f"-{r['steps']}" if r["attack"] != "fgsm" else "")


def markdown(res: dict, title: str, command: str) -> str:
    c = res["clean"]
    L = [f"# {title}", "", f"Measured by `{command}`"
         + (f" in {res['wall_seconds_this_run'] / 60:.1f} min" if res.get("wall_seconds_this_run") else "") + ".", ""]
    if len(res.get("runs", [])) > 1:   # a resumed evaluation: every command that measured a section
        L += ["Sections measured by each run, in order:", ""]
        L += [f"- `{r['command']}` on {r['device']}: {', '.join(r['sections'])}" for r in res["runs"]] + [""]
    L += ["## Clean accuracy", "",
          "| classifier (deployed) | full pipeline | raw-image classifier | MagNet | DDSA | detector false-positive rate |",
          "|---|---|---|---|---|---|",
          f"| {_f(c['classifier'])} | {_f(c['pipeline'])} | {_f(c.get('base_classifier'))} | {_f(c.get('magnet'))} | "
          f"{_f(c.get('ddsa'))} | {c['false_positive_rate']:.4f} |", "",
          f"{c['images']} test images. MagNet rejects {_f(c.get('magnet_rejected'))} of clean images."]
    if "purified_psnr_db" in c:
        L += ["", f"A clean picture through the purifier: {c['purified_psnr_db']:.1f} dB PSNR to itself (capped at 99), "
              f"read right by the classifier on {_f(c['classifier_on_purified'])}."]
    gray = res.get("graybox", {})
    table, paper_head, paper_note, paper = PAPER[res.get("dataset", "cifar10")]
    if gray:
        L += ["", f"## {table}: gray-box (attack crafted against the protected classifier alone)", "",
              "The pipeline is attacked through its own classifier; *no defense*, MagNet and DDSA through the "
              "raw-image classifier they protect. MagNet: reformer accuracy / accuracy counting a rejected "
              f"input as defended (MagNet's own metric). {paper_note}", "",
              f"| attack | eps | no defense | this project | MagNet | DDSA | {paper_head} |",
              "|---|---|---|---|---|---|---|"]
        for r in gray.values():
            p = paper(r["attack"], r["eps"])
            L.append(f"| {_name(r)} | {_eps(r['eps'])} | {_f(r.get('base_no_defense', r['no_defense']))} | "
                     f"**{_f(r['defense'])}** | {_magnet(r)} | {_f(r.get('ddsa'))} | "
                     + (" / ".join(f"{v:.3f}" for v in p) if p else "–") + " |")
        L += ["", "### Gray-box detail: this project", "",
              "*Fooled*: share of the images the classifier reads right clean and wrong attacked; of those, "
              "*caught*: flagged by the detector, *restored*: answered right by the pipeline.", "",
              "| attack | eps | deployed classifier alone | pipeline | classifier on ISM output | detector AUROC | detected "
              "| fooled | caught | restored |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in gray.values():
            L.append(f"| {_name(r)} | {_eps(r['eps'])} | {_f(r['no_defense'])} | {_f(r['defense'])} | "
                     f"{_f(r['ism_only'])} | {r['detector_auroc']:.4f} | {_f(r['detected'])} | {_f(r.get('fooled'))} | "
                     f"{_f(r.get('caught'))} | {_f(r.get('restored'))} |")
        story = [r for r in gray.values() if "restored_regenerated" in r]
        if story:
            L += ["", "Of the fooled images, read right by the classifier on the ISM output (purified) and on the "
                  "regenerated image (the GAN's latent search, the defense's regeneration settings):", "",
                  "| attack | eps | fooled | read right on the purified image | on the regenerated image |",
                  "|---|---|---|---|---|"]
            L += [f"| {_name(r)} | {_eps(r['eps'])} | {_f(r['fooled'])} | {_f(r['restored_purified'])} | "
                  f"{_f(r['restored_regenerated'])} |" for r in story]
            seen = [r for r in story if "pictures" in r]
            if seen:
                L += ["", "What the eye sees on the same fooled images: PSNR to the original (higher is closer) of the "
                      "attacked, purified and regenerated picture, the share of purified / regenerated pictures "
                      "closer to the original than the attacked one, and the largest change the purifier made to "
                      "any attacked picture (the counter-change, /255; the attack's is at most eps):", "",
                      "| attack | eps | PSNR attacked | purified | regenerated | closer: purified | regenerated "
                      "| largest counter-change (/255) |", "|---|---|---|---|---|---|---|---|"]
                L += [f"| {_name(r)} | {_eps(r['eps'])} | {p['psnr_attacked_db']:.1f} dB | {p['psnr_purified_db']:.1f} dB "
                      f"| {p['psnr_regenerated_db']:.1f} dB | {_f(p['closer_purified'])} | {_f(p['closer_regenerated'])} "
                      f"| {p['largest_counter_change_255']:.1f} |" for r in seen for p in [r["pictures"]]]
    adp = res.get("adaptive", {})
    if adp:
        any_r = next(iter(adp.values()))
        L += ["", "## Adaptive white-box (the attacker knows and differentiates through the whole defense)", "",
              f"PGD-{any_r['steps']} on {any_r['images']} test images (a seeded spread subset). {any_r['method']}", "",
              "| eps | no defense | this project | MagNet (reformer / defended) | DDSA | this project, gray-box | detector AUROC | detected |",
              "|---|---|---|---|---|---|---|---|"]
        for k, r in adp.items():
            g = gray.get(k, {}).get("defense")
            L.append(f"| {_eps(r['eps'])} | {_f(r['no_defense'])} | **{_f(r['defense'])}** | {_magnet(r)} | "
                     f"{_f(r.get('ddsa'))} | {_f(g)} | {r['detector_auroc']:.4f} | {_f(r['detected'])} |")
    ref = res.get("refusal", {})
    if ref:
        r0 = next(iter(ref.values()))
        L += ["", "## Refusing every caught picture (the paper's third strategy: detection)", "",
              f"{r0['images']} test images (the adaptive subset). {r0['method']}", "",
              "| eps | clean: answered right / refused | random noise of 1/255 (2/255): refused | gray-box PGD: stopped "
              "(refused) | adaptive PGD, knowing about the refusal: stopped (refused) |", "|---|---|---|---|---|"]
        L += [f"| {_eps(r['eps'])} | {_f(r['clean_right_let_through'])} / {_f(r['clean_refused'])} | "
              f"{_f(r['noise1_refused'])} ({_f(r['noise2_refused'])}) | {_f(r['graybox_stopped'])} ({_f(r['graybox_refused'])}) | **{_f(r['adaptive_stopped'])}** "
              f"({_f(r['adaptive_refused'])}) |" for r in ref.values()]
    lat = res.get("latent", {})
    if lat:
        r0 = next(iter(lat.values()))
        L += ["", "## Latent-space attack on regeneration", "",
              f"Search z so that G(z) is within eps of x yet misclassified; submit x + clip(G(z) - x) "
              f"({r0['images']} images). *On-manifold success*: such a G(z) was found. The pipeline that "
              "classifies the regenerated image is the one this attack targets.", "",
              "| eps | on-manifold success | deployed pipeline | pipeline reading the regenerated image |",
              "|---|---|---|---|"]
        for r in lat.values():
            L.append(f"| {_eps(r['eps'])} | {_f(r['on_manifold_success'])} | {_f(r['defense'])} | "
                     f"{_f(r['regenerated_pipeline'])} |")
    ab = res.get("ablation")
    if ab:
        L += ["", "## Per-stage ablation (eps = 8/255)", "",
              "Each row adds one stage. Gray-box: PGD-10 against the row's classifier alone; adaptive: PGD-10 "
              "through the row's whole defense (BPDA + EOT where regeneration is in the path).", "",
              "| stage | clean | gray-box PGD-10 | adaptive PGD-10 | images (adaptive) |", "|---|---|---|---|---|"]
        for r in ab["rows"]:
            name = r["stage"] + (" **(deployed)**" if r["deployed"] else "")
            L.append(f"| {name} | {_f(r[Ablation.CLEAN.value])} | {_f(r[Ablation.GRAYBOX.value])} | {_f(r[Ablation.ADAPTIVE.value])} | "
                     f"{r['images']} ({r['adaptive_images']}) |")
        if ab.get("skipped"):
            L.append(f"\nSkipped (their weights are not shipped): {', '.join(ab['skipped'])}.")
    aa = res.get("autoattack")
    if aa:
        standard = aa.get("version", "standard") == "standard"
        L += ["", "## AutoAttack (standard, L-inf)" if standard else "## AutoAttack's attacks for two classes (L-inf)", "",
              ("torchattacks' AutoAttack, version standard (APGD-CE, APGD-T, FAB-T, Square 5,000 queries), eps " if standard
               else "AutoAttack's APGD-CE (100 steps) and Square (5,000 queries), the attacks of its standard version "
                    "that apply to two classes (its targeted ones need four), eps ") +
              f"{_eps(aa['eps'])}, on {aa['images']} test images (a seeded spread subset). The pipeline is attacked end "
              f"to end ({aa.get('method', 'exact gradients through ISM, detector gate and classifier')}); the raw-image "
              "classifier alone is RobustBench's measure.", "",
              "| target | clean (same images) | AutoAttack |", "|---|---|---|",
              f"| deployed pipeline | {_f(aa['defense_clean'])} | **{_f(aa['defense'])}** |",
              f"| raw-image classifier alone | {_f(aa['no_defense_clean'])} | {_f(aa['no_defense'])} |"]
    s = res.get("sanity")
    if s:
        L += ["", "## Sanity checks", "", f"Measured on {s['images']} images at eps {_eps(s['eps'])}: "
              + ", ".join(f"{s.get('labels', {}).get(k, k)}: {v:.3f}" for k, v in s["accuracy"].items()) + ".", ""]
    checks = sanity_checks(res)
    if checks:
        failed = [c for c in checks if not c["passed"]]
        L += ["", f"{len(checks) - len(failed)} of {len(checks)} checks pass."
              + (" Failed checks (each one a reason to distrust a number above):" if failed else ""), ""]
        L += [f"- **{c['check']}**: {c['detail']}" for c in failed]
        L += [f"- passed: {c['check']}" for c in checks if c["passed"] and not c["check"].startswith(("larger", "accuracy"))]
    if "regeneration" in res:
        g = res["regeneration"]
        L += ["", "## Regeneration of clean test images", "",
              f"{g['images']} images, {g['steps']} steps x {g['restarts']} restarts: PSNR vs input "
              f"{g['psnr_vs_input_db']:.2f} dB, vs ISM output {g['psnr_vs_purified_db']:.2f} dB, classifier "
              f"accuracy {g['classifier_accuracy']:.4f}, mean steps used {g['mean_steps_used']:.1f}."]
    secs = {k: v.get("seconds") for k, v in res.items()
            if isinstance(v, dict) and "seconds" in v and k != "autoattack_part"}   # an unfinished AutoAttack
    for part in ("graybox", "adaptive", "latent"):
        if res.get(part):
            secs[part] = round(sum(r.get("seconds", 0) for r in res[part].values()), 1)
    L += ["", "## Time per section (s)", "", " | ".join(f"{k}: {v}" for k, v in secs.items())]
    L += ["", "Gray-box figures assume the attacker does not know the defense; the adaptive table is "
          "what an attacker who knows it achieves."]
    return "\n".join(L) + "\n"


def files_line(stem: str, figures: list[Path]) -> str:
    """The report's last line: the raw results and every figure written beside it, by name (so that each file in
    results/ is named by the text that explains it)."""
    shown = ", ".join(f"[{Path(f).stem.removeprefix(stem + '-')}]({Path(f).name})" for f in figures)
    return f"\nFiles: raw results [{stem}.json]({stem}.json)" + (f"; figures {shown}" if shown else "") + ".\n"


def write_figures(res: dict, out: Path, stem: str, label: str) -> list[Path]:
    """Accuracy-vs-epsilon curves (one figure per attack, all defenses and threat models) and the
    detector's ROC curves. Returns the paths written."""
    from ism.eval.curves import curves_from_results, plot_curves, plot_roc

    paths = []
    for attack in ("fgsm", "pgd"):
        series = curves_from_results(res, attack)
        if series:
            fig = plot_curves(series, f"{attack.upper()}: accuracy vs epsilon, {label}")
            paths.append(out / f"{stem}-{attack}.png")
            fig.savefig(paths[-1], dpi=100)
    if res.get("graybox"):
        fig = plot_roc(res, f"Detector ROC (clean vs attacked), {label}")
        paths.append(out / f"{stem}-roc.png")
        fig.savefig(paths[-1], dpi=100)
    return paths


# the results' column names, in words (the page lists failed sanity checks for visitors)
COLUMN_WORDS = {"base_no_defense": f"the {ALONE}",
                "no_defense": "the deployed classifier alone", "defense": "this defense", "magnet": "MagNet",
                "ddsa": "DDSA", "ism_only": "this defense without its detector"}


# what each failed sanity check means, in words (ism/eval/sanity.py names them)
CHECK_WORDS = {"larger epsilon never raises accuracy": "accuracy rises as the attack gets stronger, which no real "
                                                       "defense allows",
               "accuracy under attack is not above clean accuracy": "it scores higher on attacked pictures than on "
                                                                    "clean ones"}


def check_in_words(check: dict) -> str:
    """A failed sanity check as a sentence for a visitor: "Gray-box FGSM against the classifier alone (adversarially
    trained): accuracy rises as the attack gets stronger, which no real defense allows (ε 0.200 → 0.300: 0.066 →
    0.088)." Checks without such words keep their name and detail."""
    import re

    m = re.fullmatch(r"(.+) \((graybox|adaptive) ([\w-]+), (\w+)\)", check["check"])
    if not m or m.group(1) not in CHECK_WORDS:
        return f"{check['check']}: {check['detail']}"
    what, threat, attack, col = m.groups()
    rises = re.findall(r"eps ([\d.]+): ([\d.]+) -> eps ([\d.]+): ([\d.]+)", check["detail"])
    above = re.findall(r"eps ([\d.]+): ([\d.]+) > clean ([\d.]+)", check["detail"])
    figures = ("; ".join(f"ε {e1} → {e2}: {a1} → {a2}" for e1, a1, e2, a2 in rises) if rises else
               f"clean {above[0][2]}; " + ", ".join(f"{a} at ε {e}" for e, a, _ in above) if above else check["detail"])
    threat = "Gray-box" if threat == "graybox" else "Adaptive"
    return f"{threat} {attack} against {COLUMN_WORDS.get(col, col)}: {CHECK_WORDS[what]} ({figures})."


def _repeats(check: dict, checks: list[dict]) -> bool:
    """A check on the deployed classifier alone that repeats, figure for figure, the same check on the adversarially
    trained classifier alone (the paper's recipe deploys that one itself): said once."""
    twin = check["check"].replace(", no_defense)", ", base_no_defense)")
    return twin != check["check"] and any(c["check"] == twin and c["detail"] == check["detail"] for c in checks)


def curves_note(res: dict, path: str) -> str:
    """What the saved curves show, and every sanity check they fail (for the app's curves tab)."""
    n = res["clean"]["images"]
    m = next(iter(res.get("adaptive", {}).values()), {}).get("images")
    text = (f"Gray-box curves (solid) on {n:,} test images"
            + (f", adaptive white-box curves (dashed: PGD through the whole defense) on {m:,}" if m else
               "; no adaptive results in this file yet (use the live measurement)")
            + ". Gray-box: the attacker knows the classifier but not the defense; adaptive: the attacker knows both. "
            f"(Measured by the project's evaluation, saved in `{path}`.)")
    checks = res["sanity_checks"] if "sanity_checks" in res else sanity_checks(res)
    failed = [c for c in checks if not c["passed"] and not _repeats(c, checks)]
    if failed:
        text += ("\n\n**Sanity checks this evaluation fails** (each one a reason to distrust a number):\n"
                 + "\n".join(f"- {check_in_words(c)}" for c in failed[:8])
                 + (f"\n- … and {len(failed) - 8} more (see the results file)" if len(failed) > 8 else ""))
    return text
