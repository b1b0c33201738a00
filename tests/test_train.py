"""A one-step smoke run of every training entry point on tiny real data, then resume."""
import json

import torch

from ism import load_defense
from train.__main__ import main


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
    for name in ("ablation/plain", "ablation/adversarial", "ablation/ism", "ablation/distilled",
                 "baselines/magnet", "baselines/ddsa"):
        assert (out / name / "model.safetensors").is_file() and (out / name / "README.md").is_file(), name
    magnet = json.loads((out / "baselines/magnet/config.json").read_text())
    assert magnet["recon_threshold"] != 1.0 and len(magnet["jsd_thresholds"]) == 2   # calibrated
    cfg = json.loads((out / "defense.json").read_text())
    assert isinstance(cfg["gate"], bool) and "gate on: adaptive PGD-10 8/255" in cfg["measurements"]
    assert cfg["final_input"] in ("purified", "regenerated", "mean") and cfg["measurements"]["validation images"] > 0
    d = load_defense(out)
    assert d.predict(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert 0.0 <= d.threshold <= 1.0
    # resume from the checkpoint left by the classifier run: starts at the saved step, still writes weights
    before = (out / "classifier" / "model.safetensors").stat().st_mtime_ns
    main(["classifier", *args, "--resume"])
    assert (out / "classifier" / "model.safetensors").stat().st_mtime_ns > before
    log = (ckpt / "logs" / "cifar10-classifier.jsonl").read_text().splitlines()
    assert any('"stage": "student"' in line for line in log)
