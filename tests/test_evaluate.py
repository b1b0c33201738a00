"""The evaluation command on a few real test images: every section, JSON, Markdown, plots, resume."""
import json

import pytest

from ism.eval.command import main
from ism.eval.keys import Sanity

pytestmark = pytest.mark.slow


def test_evaluate_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import conftest

    args = ["--dataset", "cifar10", "--limit", "6", "--weights", str(conftest.WEIGHTS), "--data", str(conftest.DATA),
            "--out", str(tmp_path / "results"), "--batch-size", "6", "--eps", "8/255,0.3", "--adaptive-eps", "8/255,0.3", "--small"]
    res = main(args)
    c = res["clean"]
    assert c["images"] == 6 and 0 <= c["pipeline"] <= 1 and 0 <= c["false_positive_rate"] <= 1
    assert len(res["graybox"]) == 4   # FGSM and PGD-10 at the two epsilons asked for
    for r in res["graybox"].values():
        assert 0 <= r["no_defense"] <= 1 and 0 <= r["defense"] <= 1 and 0 <= r["detector_auroc"] <= 1
        assert r["roc"]["fpr"][0] == 1.0 and r["roc"]["tpr"][-1] == 0.0   # ROC runs from (1, 1) to (0, 0)
        # of the images the attack fools: the share caught and the share answered right again
        assert 0 <= r["fooled"] <= 1 - r["no_defense"] + 1e-9
        if r["fooled"]:
            assert 0 <= r["caught"] <= 1 and 0 <= r["restored"] <= 1
            assert r["restored"] * r["fooled"] <= r["defense"] + 1e-9
        else:
            assert r["caught"] is None and r["restored"] is None
        if "magnet" in c:
            assert r["magnet"] <= r["magnet_defended"] <= 1 and 0 <= r["ddsa"] <= 1
    assert any(r["fooled"] > 0 for r in res["graybox"].values())
    # the app's default run (PGD-10 at 8/255): purified against regenerated, read on the fooled images
    story = res["graybox"]["pgd@0.0314"]
    if story["fooled"]:
        assert 0 <= story["restored_purified"] <= 1 and 0 <= story["restored_regenerated"] <= 1
        # what the eye sees on them: each picture's distance to the original, and the purifier's largest change
        eye = story["pictures"]
        assert 5 < eye["psnr_attacked_db"] < 60 and 5 < eye["psnr_purified_db"] < 99 and 5 < eye["psnr_regenerated_db"]
        assert 0 <= eye["closer_purified"] <= 1 and 0 <= eye["closer_regenerated"] <= 1
        assert 0 < eye["largest_counter_change_255"] <= 255
    assert 5 < c["purified_psnr_db"] <= 99 and 0 <= c["classifier_on_purified"] <= 1
    assert all("restored_regenerated" not in r for k, r in res["graybox"].items() if k != "pgd@0.0314")
    assert [round(r["eps"], 4) for r in res["adaptive"].values()] == [0.0314, 0.3]
    assert all(0 <= r["defense"] <= 1 and r["images"] == 6 for r in res["adaptive"].values())
    # refusing every flagged picture: clean ones answered right or refused; attacked ones stopped (refused, or
    # let through and answered right), against gray-box PGD and an adaptive PGD that knows about the refusal
    ref = res["refusal"]["pgd@0.0314"]
    assert ref["images"] == 6 and ref["clean_right_let_through"] + ref["clean_refused"] <= 1
    assert 0 <= ref["noise1_refused"] <= 1 and 0 <= ref["noise2_refused"] <= 1   # the cost: faint random noise
    for threat in ("graybox", "adaptive"):
        assert 0 <= ref[f"{threat}_refused"] <= ref[f"{threat}_stopped"] <= 1
        assert ref[f"{threat}_stopped"] == pytest.approx(ref[f"{threat}_right_let_through"] + ref[f"{threat}_refused"])
    assert [round(r["eps"], 4) for r in res["latent"].values()] == [0.0314, 0.3]
    stages = [r["stage"] for r in res["ablation"]["rows"]]
    # the hardened CIFAR-10 recipe has no plain or distilled classifier: those rows are skipped, said so
    assert stages[0] == "+ adversarial training (FGSM-RS)" and sum(r["deployed"] for r in res["ablation"]["rows"]) == 1
    assert "classifier alone" in res["ablation"]["skipped"]
    assert "autoattack" not in res   # --small skips it (minutes even on 4 images): see the test below
    assert set(res["sanity"]["accuracy"]) == {k.value for k in Sanity}
    assert res["sanity_checks"] and all(set(k) == {"check", "passed", "detail"} for k in res["sanity_checks"])
    md = (tmp_path / "results" / "cifar10-limit6.md").read_text()
    assert md.startswith("# Evaluation")
    assert "| fooled | caught | restored |" in md
    if story["fooled"]:
        assert "| read right on the purified image | on the regenerated image |" in md
    for section in ("Table 3", "Adaptive white-box", "Refusing every caught picture", "Latent-space attack",
                    "Per-stage ablation", "Sanity checks"):
        assert section in md
    written = json.loads((tmp_path / "results" / "cifar10-limit6.json").read_text())
    assert written["graybox"] == res["graybox"]
    for plot in ("pgd", "fgsm", "roc"):
        assert (tmp_path / "results" / f"cifar10-limit6-{plot}.png").stat().st_size > 5000
    again = main(args)   # resumes from .cache/eval: nothing recomputed, same figures
    assert again["graybox"] == res["graybox"] and again["ablation"] == res["ablation"]
    assert again["runs"] == res["runs"] and len(res["runs"]) == 1   # a run that measured nothing is not recorded


def test_autoattack_section(tiny_defense, real_images):
    """The AutoAttack section (torchattacks' standard ensemble) on a tiny defense: through the pipeline
    and on the raw-image classifier, never above the clean accuracy of the same images; in the report."""
    import torch

    from ism.eval.evaluation import EvalConfig, Evaluation
    from ism.eval.report import markdown

    x, y = real_images
    cfg = EvalConfig(autoattack_images=6, batch_size=6, adaptive_images=None)
    ev = Evaluation(tiny_defense, (x * 255).round().to(torch.uint8), y, cfg)
    ev.clean()
    ev.autoattack()
    aa = ev.res["autoattack"]
    assert aa["images"] == 6 and aa["version"] == "standard" and aa["norm"] == "Linf"
    assert 0 <= aa["defense"] <= aa["defense_clean"] <= 1 and 0 <= aa["no_defense"] <= aa["no_defense_clean"] <= 1
    assert "## AutoAttack (standard, L-inf)" in markdown({**ev.res, "dataset": "cifar10"}, "t", "cmd")
    # interrupted after its first half (the pipeline): a resumed run keeps that half, computes the other
    half = {k: aa[k] for k in ("images", "eps", "version", "norm")}
    ev.res = {"clean": ev.res["clean"], "autoattack_part": {**half, "defense": 0.5, "defense_clean": 0.5, "seconds": 1}}
    assert "autoattack_part" not in markdown({**ev.res, "dataset": "cifar10"}, "t", "cmd")   # unfinished: not a section
    ev.autoattack()
    again = ev.res["autoattack"]
    assert "autoattack_part" not in ev.res
    assert again["defense"] == 0.5 and again["no_defense"] == aa["no_defense"] and again["seconds"] >= 1   # the kept half's time counted


def test_autoattack_through_a_counter_change_attacks_the_adaptive_target(tiny_defense, real_images, monkeypatch):
    """A counter-change's signed steps give AutoAttack no useful gradient: through such a defense it attacks the
    adaptive section's target (the pipeline's answers, the classifier's gradient on ISM(x) and x); the raw-image
    classifier is attacked as it is."""
    from dataclasses import replace

    import torch
    import torchattacks

    from ism import Defense
    from ism.attacks.adaptive import AdaptiveTarget
    from ism.eval.evaluation import EvalConfig, Evaluation
    from ism.eval.report import markdown

    d = tiny_defense
    counter = Defense(d.classifier, d.ism, d.detector, d.generator, replace(d.config, counter_bound=12 / 255))
    seen = []

    class Spy:
        def __init__(self, model, **kwargs):
            seen.append(model)

        def __call__(self, x, y):
            return x

    monkeypatch.setattr(torchattacks, "AutoAttack", Spy)
    x, y = real_images
    said = []
    for defense in (counter, d):
        ev = Evaluation(defense, (x[:4] * 255).round().to(torch.uint8), y[:4],
                        EvalConfig(autoattack_images=4, batch_size=4, adaptive_images=None))
        ev.clean()
        ev.autoattack()
        said.append(markdown({**ev.res, "dataset": "cifar10"}, "t", "cmd"))
    assert isinstance(seen[0], AdaptiveTarget) and seen[0].defense is counter and seen[1] is not counter
    assert seen[2] is d and not isinstance(seen[3], AdaptiveTarget)
    # and the report says which gradient the attacker followed
    assert "gradient on ISM(x) and on x" in said[0] and "gradient on ISM(x)" not in said[1]
    assert "exact gradients through ISM" in said[1]


def test_autoattack_on_two_classes_runs_the_attacks_that_apply(tiny_defense):
    """torchattacks' standard AutoAttack indexes the fourth largest logit (APGD-T's DLR loss): on CelebA's two
    classes it raised IndexError. There the evaluation runs APGD-CE and Square; ten classes keep the standard one."""
    import torchattacks

    from ism.eval.evaluation import autoattack

    two = autoattack(tiny_defense.classifier, 8 / 255, 2)
    assert isinstance(two, torchattacks.MultiAttack)
    assert [type(a).__name__ for a in two.attacks] == ["APGD", "Square"] and two.attacks[0].loss == "ce"
    assert isinstance(autoattack(tiny_defense.classifier, 8 / 255, 10), torchattacks.AutoAttack)
