"""The evaluation command on a few real test images: writes JSON, Markdown and plots, and resumes."""
import json

from ism.evaluate import main


def test_evaluate_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import conftest

    args = ["--dataset", "cifar10", "--limit", "12", "--weights", str(conftest.WEIGHTS), "--data", str(conftest.DATA),
            "--out", str(tmp_path / "results"), "--batch-size", "6", "--adaptive-eps", "8/255,0.3"]
    res = main(args)
    assert res["clean"]["images"] == 12 and 0 <= res["clean"]["pipeline"] <= 1
    assert len(res["graybox"]) == 10   # FGSM and PGD-10 at five epsilons
    for r in res["graybox"].values():
        assert 0 <= r["no_defense"] <= 1 and 0 <= r["defense"] <= 1 and 0 <= r["detector_auroc"] <= 1
    assert [round(r["eps"], 4) for r in res["adaptive"].values()] == [0.0314, 0.3]
    assert all(0 <= r["defense"] <= 1 for r in res["adaptive"].values())
    assert "Adaptive white-box" in (tmp_path / "results" / "cifar10-limit12.md").read_text()
    assert res["regeneration"]["images"] == 12
    written = json.loads((tmp_path / "results" / "cifar10-limit12.json").read_text())
    assert written["graybox"] == res["graybox"]
    assert (tmp_path / "results" / "cifar10-limit12.md").read_text().startswith("# Evaluation")
    assert (tmp_path / "results" / "cifar10-limit12-pgd.png").stat().st_size > 5000
    again = main(args)   # resumes from .cache/eval: nothing recomputed, same figures
    assert again["graybox"] == res["graybox"]
