"""The gray-box example figure: real attack, real pipeline, a PNG on disk."""
import pytest
import torch
from conftest import DATA, WEIGHTS

from ism.eval.gallery import graybox_examples, main

pytestmark = pytest.mark.slow


def test_graybox_examples_rows_are_what_the_pipeline_saw(defense, real_images):
    x, y = real_images[0][:4], real_images[1][:4]
    rows = graybox_examples(defense, x, y, "fgsm", 0.3)
    xa, pred = rows["attacked"]
    assert (xa - x).abs().max() <= 0.3 + 1e-6 and (xa - x).abs().max() > 0.1   # a real eps-0.3 attack
    assert torch.equal(pred, defense.predict(xa).argmax(1))
    assert torch.equal(rows["clean"][1], defense.predict(x).argmax(1))
    reads, _ = rows["classifier reads"]
    with torch.no_grad():
        expected = defense.defended_image(xa)
    detected = rows["detected"].view(-1, 1, 1, 1)
    assert torch.allclose(reads, torch.where(detected, expected, xa) if defense.config.gate else expected, atol=1e-5)


def test_gallery_cli_writes_a_png(tmp_path):
    out = main(["--dataset", "cifar10", "--data", str(DATA), "--weights", str(WEIGHTS), "--attack", "fgsm",
                "--images", "3", "--out", str(tmp_path / "g.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    for bad in (["--images", "0"], ["--eps", "8/2x"], ["--eps", "2"]):
        with pytest.raises(SystemExit):
            main([*bad, "--out", str(tmp_path / "h.png")])
    assert not (tmp_path / "h.png").exists()
