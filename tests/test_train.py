"""A one-step smoke run of every training entry point on tiny real data, then resume."""
import json
import shutil
import time

import pytest
import torch

from ism import load_defense
from train.__main__ import main, parse_args
from train.common import apply_overrides, bf16_enabled
from train.robust import RobustTrainConfig, robust_config

pytestmark = pytest.mark.slow


def test_train_all_tiny_then_resume(tmp_path):
    out, ckpt = tmp_path / "w" / "cifar10", tmp_path / "ckpt"
    args = ["--limit", "120", "--epochs", "0.02", "--out", str(out), "--ckpt-dir", str(ckpt),
            "--batch-size", "32", "--val-per-class", "2", "--no-bf16"]
    main(["all", *args])
    for name in ("classifier", "ism", "detector", "generator", "discriminator"):
        files = {p.name for p in (out / name).iterdir()}
        assert {"config.json", "model.safetensors", "README.md"} <= files, (name, files)
        card = (out / name / "README.md").read_text()
        assert "python -m train all" in card and "Measured metrics" in card
    # the app's data-set recogniser: CIFAR-10 against the CelebA folder beside --data, measured on both test sets
    rec = json.loads((out / "recogniser/metrics.json").read_text())
    assert any(k.startswith("celeba test pictures called outside cifar10") for k in rec)
    assert json.loads((out / "recogniser/config.json").read_text())["kinds"] == ["cifar10", "celeba"]
    for name in ("ablation/adversarial", "ablation/ism", "baselines/magnet", "baselines/ddsa"):
        assert (out / name / "model.safetensors").is_file() and (out / name / "README.md").is_file(), name
    # CIFAR-10's hardened recipe: airbench net, no distillation (so no teacher and no distillation-only
    # ablation stage), an ISM with a detail path
    assert not (out / "ablation/plain").exists() and not (out / "ablation/distilled").exists()
    assert json.loads((out / "classifier/config.json").read_text())["arch"] == "airbench"
    assert "airbench-shaped net" in (out / "ablation/adversarial/README.md").read_text()
    ism = json.loads((out / "ism/config.json").read_text())
    assert ism["detail_channels"] == 16 and not ism.get("refine_width")   # (`refine` is not part of `all`)
    magnet = json.loads((out / "baselines/magnet/config.json").read_text())
    assert magnet["recon_threshold"] != 1.0 and len(magnet["jsd_thresholds"]) == 2   # calibrated
    cfg = json.loads((out / "defense.json").read_text())
    assert isinstance(cfg["gate"], bool) and "gate on: adaptive PGD-10 8/255" in cfg["measurements"]
    assert cfg["final_input"] in ("purified", "regenerated", "mean") and cfg["measurements"]["validation images"] > 0
    assert cfg["measurements"]["trained in"].endswith("threads)")   # the stage's time, like the cards' line
    d = load_defense(out)
    assert d.predict(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert 0.0 <= d.threshold <= 1.0
    # resume from the checkpoint left by the classifier run: it starts at the saved (last) step, so it
    # trains no step again (the log gains no per-epoch line), and still publishes the same weights
    import safetensors.torch

    def trained_epochs():
        log = (ckpt / "logs" / "cifar10-classifier.jsonl").read_text().splitlines()
        return [line for line in log if '"step"' in line]

    before = (out / "classifier" / "model.safetensors").stat().st_mtime_ns
    # (`all` ran `robust` since: the classifier this run published is the one kept in ablation/adversarial)
    epochs = trained_epochs()
    weights = safetensors.torch.load_file(str(out / "ablation" / "adversarial" / "model.safetensors"))
    assert epochs and all('"stage": "student"' in line for line in epochs)
    main(["classifier", *args, "--resume"])
    assert (out / "classifier" / "model.safetensors").stat().st_mtime_ns > before
    assert trained_epochs() == epochs
    again = safetensors.torch.load_file(str(out / "classifier" / "model.safetensors"))
    assert all(torch.equal(again[k], v) for k, v in weights.items())

    # --set changes one field of the component's train config; it reaches the card and robust.json.
    # A rerun starts again from the kept starting weights, so robust.json then lists it alone ...
    main(["robust", *args, "--set", "clean_weight=2.5", "--set", "archive=false", "--set", "ema=0"])
    card = (out / "classifier" / "README.md").read_text()
    assert '"clean_weight": 2.5' in card and "--set clean_weight=2.5" in card and "the last of" not in card
    runs = json.loads((out / "ablation" / "robust.json").read_text())["runs"]
    assert [r["train_config"]["clean_weight"] for r in runs] == [2.5]
    # ... without them (CelebA's layout) a rerun continues the last one, and the history grows
    for name in ("ablation/adversarial", "ablation/ism"):
        shutil.rmtree(out / name)
    # (this one ships a moving average of its weights: --set ema=DECAY, and adds the gray-box term)
    main(["robust", *args, "--set", "clean_weight=4", "--set", "archive=false", "--set", "ema=0.5",
          "--set", "graybox_weight=1"])
    runs = json.loads((out / "ablation" / "robust.json").read_text())["runs"]
    assert [r["train_config"]["clean_weight"] for r in runs] == [2.5, 4.0]
    assert [r["train_config"]["ema"] for r in runs] == [0.0, 0.5]
    card = (out / "ism" / "README.md").read_text()
    assert "the last of 2 runs" in card and "exponential moving average (decay 0.5" in card
    assert "CE on purified images attacked by PGD-3 against the classifier alone" in card
    assert "gray-box PGD-10 eps=0.0314 against the classifier alone, read through ISM + classifier" in card
    log = (ckpt / "logs" / "cifar10-robust.jsonl").read_text().splitlines()
    # one line per run: `all` (CIFAR-10's recipe averages, ema 0.99), ema=0, ema=0.5
    assert len(log) == 3 and robust_config("cifar10").ema > 0
    assert "val_clean_purified_last_step" in log[-1] and "val_clean_purified_last_step" not in log[1]
    assert "val_graybox_pgd10_purified" in log[-1] and "val_graybox_pgd10_purified" not in log[1]


def test_train_all_paper_recipe_tiny(tmp_path):
    """``--recipe paper``: Table 1 classifier (teacher + distilled student), Eq. 3 ISM, no robust stage."""
    out = tmp_path / "w" / "cifar10-paper"
    main(["all", "--recipe", "paper", "--limit", "120", "--epochs", "0.02", "--out", str(out), "--ckpt-dir",
          str(tmp_path / "ckpt"), "--batch-size", "32", "--val-per-class", "2", "--no-bf16"])
    for name in ("classifier", "ism", "detector", "generator", "ablation/plain", "ablation/distilled"):
        assert (out / name / "model.safetensors").is_file(), name
    assert json.loads((out / "classifier/config.json").read_text())["arch"] == "table1"
    ism = json.loads((out / "ism/config.json").read_text())
    assert ism["detail_channels"] == 0 and ism["refine_width"] == 32      # Table 2's code + the refiner
    assert "fooled images the classifier reads right on ISM(x')" in (out / "ism/README.md").read_text()
    assert not (out / "ablation/robust.json").exists() and not (out / "ablation/adversarial").exists()
    m = json.loads((out / "defense.json").read_text())["measurements"]   # caught / restored on validation
    assert 0 <= m["of those, caught by the detector"] <= 1 and "of those, read right on the purified image" in m
    d = load_defense(out)
    assert d.predict(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_refiner_starts_from_a_trained_ism_and_resumes(tmp_path):
    """``--set init=FOLDER`` keeps that ISM's auto-encoder bit for bit (frozen) and trains the refiner only;
    a run resumed after its last checkpoint publishes the same weights without training again."""
    import safetensors.torch

    out = tmp_path / "w" / "cifar10-paper"
    common = ["--recipe", "paper", "--limit", "120", "--out", str(out), "--ckpt-dir", str(tmp_path / "ckpt"),
              "--batch-size", "32", "--val-per-class", "2", "--no-bf16"]
    main(["classifier", "--epochs", "0.02", *common])
    main(["ism", "--epochs", "0.02", *common, "--set", "refine_width=0", "--set", "detail_channels=4",   # a narrow
          "--set", "enc_widths=(8, 16, 16, 16)", "--set", "dec_widths=(16, 16, 8, 8)"])    # detail-path auto-encoder
    plain = safetensors.torch.load_file(str(out / "ism/model.safetensors"))
    made = json.loads((out / "ism/config.json").read_text())
    assert (made["enc_widths"], made["dec_widths"], made["detail_channels"]) == ([8, 16, 16, 16], [16, 16, 8, 8], 4)
    shutil.copytree(out / "ism", tmp_path / "plain")
    args = ["ism", *common, "--set", f"init={tmp_path / 'plain'}", "--set", "refine_epochs=2"]
    main(args)
    refined = safetensors.torch.load_file(str(out / "ism/model.safetensors"))
    assert all(torch.equal(refined[k], v) for k, v in plain.items())
    assert any(k.startswith("refiner.") for k in refined)
    assert any(refined[k].abs().sum() > 0 for k in ("refiner.out.weight",))   # it trained
    main([*args, "--resume"])
    again = safetensors.torch.load_file(str(out / "ism/model.safetensors"))
    assert all(torch.equal(again[k], v) for k, v in refined.items())
    # the bounded refiner (train/bound_sweep.sh): that refiner fine-tuned with a bound, on a pool of some images
    shutil.copytree(out / "ism", tmp_path / "refined")
    main(["ism", *common, "--ckpt-dir", str(tmp_path / "ckpt-b"), "--set", f"init={tmp_path / 'refined'}",
          "--set", "keep_refiner=true", "--set", "refine_bound=0.047", "--set", "refine_images=40",
          "--set", "clean_mse=300", "--set", "refine_epochs=1", "--set", "undo_attacks=('pgd', 'mifgsm')",
          "--set", "undo_levels_255=(4, 8)"])
    card = (out / "ism/README.md").read_text()
    bounded = json.loads((out / "ism/config.json").read_text())
    assert bounded["refine_bound"] == 0.047 and "largest change the ISM makes to an attacked image" in card
    assert "refiner: pgd / mifgsm at eps [4, 8]/255" in card                  # the pool it was asked for
    (pool,) = (tmp_path / "ckpt-b" / "pool").glob("cifar10-train-40-*.safetensors")
    drawn = safetensors.torch.load_file(str(pool))
    assert drawn["attack"].max() <= 1 and drawn["level"].max() <= 2 and len(drawn["adv"]) == 40
    tuned = safetensors.torch.load_file(str(out / "ism/model.safetensors"))
    assert not torch.equal(tuned["refiner.out.weight"], refined["refiner.out.weight"])   # started from it, trained


def test_robust_runs_reads_the_marker_written_before_the_history(tmp_path):
    from ism.folders import ROBUST_MARKER
    from train.robust import robust_runs

    assert robust_runs(tmp_path) == []
    (tmp_path / ROBUST_MARKER).parent.mkdir()
    (tmp_path / ROBUST_MARKER).write_text(json.dumps(
        {"command": "python -m train robust", "train_config": {"lr": 5e-4}, "starting weights kept": []}))
    assert robust_runs(tmp_path) == [{"command": "python -m train robust", "train_config": {"lr": 5e-4}}]


def test_preact18_classifier_trains_and_its_card_says_why(tmp_path):
    """``--set arch=preact18``: the hardened recipe on PreActResNet-18; its card names the net and says it
    is not the shipped one (not the airbench net's reason)."""
    out = tmp_path / "w"
    main(["classifier", "--limit", "120", "--epochs", "0.02", "--out", str(out), "--ckpt-dir", str(tmp_path / "c"),
          "--batch-size", "32", "--val-per-class", "2", "--no-bf16", "--set", "arch=preact18",
          "--set", "channels=[8,8,16,16]"])
    assert json.loads((out / "classifier/config.json").read_text())["arch"] == "preact18"
    card = (out / "classifier/README.md").read_text()
    assert "PreActResNet-18 (ism/models/classifier.py)" in card and "Not the shipped net" in card
    assert "Chosen over the paper's Table 1 net" not in card


def test_set_overrides_are_typed_and_checked():
    tc = apply_overrides(robust_config("celeba"), ["clean_weight=3", "lr=3e-4", "steps=5", "archive=true",
                                                   "eps-ramp=0"])
    assert (tc.clean_weight, tc.lr, tc.steps, tc.archive, tc.eps_ramp) == (3.0, 3e-4, 5, True, 0.0)
    assert isinstance(tc.steps, int) and tc.epochs == robust_config("celeba").epochs   # the rest unchanged
    with pytest.raises(ValueError, match="clean_weight"):          # the message lists the fields
        apply_overrides(RobustTrainConfig(), ["clean_wieght=3"])
    with pytest.raises(ValueError, match="not a valid int"):
        apply_overrides(RobustTrainConfig(), ["steps=three"])
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        apply_overrides(RobustTrainConfig(), ["lr"])


def test_cli_set_is_repeatable_and_one_component_only():
    names, cfg = parse_args(["robust", "--dataset", "celeba", "--set", "clean_weight=3", "--set", "lr=3e-4"])
    assert names == ["robust"] and cfg.overrides == ("clean_weight=3", "lr=3e-4")
    with pytest.raises(SystemExit):
        parse_args(["all", "--set", "lr=1e-3"])
    # `pipeline` sets DefenseConfig's fields (the counter-change's); one it does not have is refused by name
    from ism.defense import DefenseConfig

    assert parse_args(["pipeline", "--set", "counter_bound=0.03"])[1].overrides == ("counter_bound=0.03",)
    assert apply_overrides(DefenseConfig(), ["counter_bound=0.03"]).counter_bound == 0.03
    with pytest.raises(ValueError, match="counter_bound"):
        apply_overrides(DefenseConfig(), ["lr=1e-3"])


def test_bf16_only_where_it_is_fast():
    cpu = torch.device("cpu")
    assert bf16_enabled(None, cpu) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert bf16_enabled(None, torch.device("cuda")) is True
    assert bf16_enabled(False, torch.device("cuda")) is False and bf16_enabled(True, cpu) is True
    assert parse_args(["classifier"])[1].bf16 is None and parse_args(["classifier", "--no-bf16"])[1].bf16 is False


def test_a_robust_recipe_of_several_runs_runs_them_in_order(tmp_path, monkeypatch):
    """CelebA's recipe is four `train robust` runs, each continuing the last: they run in order, each
    with its own checkpoint and recorded command, and --resume skips the runs already published."""
    import train.robust as robust
    from train.common import Run, RunConfig

    stages = [RobustTrainConfig(epochs=1, clean_weight=5.0), RobustTrainConfig(epochs=2, clean_weight=6.0)]
    monkeypatch.setitem(robust.ROBUST_RECIPES, "cifar10", stages)
    ran, clocks = [], []

    def stage(run, tc):
        ran.append((tc, run.command, run.ckpt.name))
        clocks.append(time.time() - run.t0)
        run.t0 -= 600                           # this run took 10 minutes
    monkeypatch.setattr(robust, "_train_stage", stage)

    def go(resume):
        cfg = RunConfig(out=str(tmp_path / "w"), ckpt_dir=str(tmp_path / "c"), limit=40, val_per_class=2, resume=resume)
        robust.train_robust(Run(cfg, "robust", "python -m train robust"))
    go(False)
    assert [tc.clean_weight for tc, _, _ in ran] == [5.0, 6.0]
    assert [c for _, c, _ in ran] == [f"python -m train robust  # run {k} of 2 (train/robust.py ROBUST_RECIPES)"
                                      for k in (1, 2)]
    assert [n for _, _, n in ran] == ["robust-1.pt", "robust-2.pt"]
    assert max(clocks) < 60                     # each run's card times that run alone, not the ones before
    go(True)
    assert len(ran) == 2                        # both runs had published: nothing runs again
    (tmp_path / "c" / "cifar10" / "robust-2.done").unlink()
    go(True)
    assert len(ran) == 3 and ran[-1][0].clean_weight == 6.0


def test_resumed_run_reports_its_whole_time(tmp_path):
    """A checkpoint carries the time spent so far: a run resumed in a later session reports (card's
    "Trained in", log's ``t``) the time before the interruption too, not only its last piece."""
    from train.common import Run, RunConfig

    def run(resume):
        return Run(RunConfig(out=str(tmp_path / "w"), ckpt_dir=str(tmp_path / "c"), limit=40, val_per_class=2,
                             resume=resume), "ism", "python -m train ism")
    first = run(False)
    first.t0 -= 25 * 60                         # 25 minutes of training, then a checkpoint, then the session ends
    first.save_ckpt(step=3)
    again = run(True)
    assert again.load_ckpt()["step"] == 3
    assert again.elapsed().startswith("25.0 min")
    assert run(False).elapsed().startswith("0.0 min")   # a fresh run starts its own clock


def test_cpu_recipe_is_the_hardened_one_cut_to_fit_a_cpu(tmp_path):
    """``--recipe cpu``: every component trains the CPU-sized configuration (narrower classifier, fewer
    epochs), recorded in its card; CelebA has no such recipe."""
    out = tmp_path / "w" / "cifar10-cpu"
    main(["all", "--recipe", "cpu", "--limit", "80", "--out", str(out), "--ckpt-dir", str(tmp_path / "ckpt"),
          "--batch-size", "32", "--val-per-class", "2", "--no-bf16"])
    assert json.loads((out / "classifier/config.json").read_text())["channels"] == [32, 64, 256, 256]
    ism = json.loads((out / "ism/config.json").read_text())
    assert ism["detail_channels"] == 16 and not ism.get("refine_width")   # (`refine` is not part of `all`)
    # (robust republishes classifier/ and ism/: the first runs' cards are kept in ablation/)
    epochs = {"ablation/adversarial": '"student_epochs": 6', "ablation/ism": '"epochs": 2', "classifier": '"epochs": 0.5',
              "detector": '"epochs": 1', "generator": '"epochs": 1', "baselines/magnet": '"magnet_epochs": 1'}
    for name, text in epochs.items():
        assert text in (out / name / "README.md").read_text(), name
    assert load_defense(out).predict(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(SystemExit):
        parse_args(["all", "--recipe", "cpu", "--dataset", "celeba"])
