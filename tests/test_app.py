"""The app, launched on localhost and driven through its named API endpoint with gradio_client."""
import pytest
from gradio_client import Client, handle_file

from conftest import ROOT


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_defend_returns_every_stage(client):
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "PGD", 0.3, 5, "gray-box", 2, 6, 0,
                         api_name="/defend")
    (orig, orig_lab, pert, pert_txt, adv, adv_lab, det, det_txt, pur, pur_lab, regen, regen_txt, frames,
     final, final_lab, verdict, notes, warnings, timings) = out
    for img in (orig, pert, adv, pur, regen, final):
        assert img and img.endswith((".png", ".webp", ".jpg", ".jpeg"))
    assert orig_lab["label"] and len(orig_lab["confidences"]) == 3
    assert "L∞ = 0.3" in pert_txt
    assert det["label"] in ("ATTACKED", "clean") and "P(attacked)" in det_txt
    assert 1 <= len(frames) <= 7
    assert "Final prediction" in verdict and ("CAUGHT" in verdict or "MISSED" in verdict)
    assert "true label (cat)" in verdict
    assert "regeneration" in timings


def test_bad_upload_is_a_clean_error(client, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # PNG signature, then nothing
    with pytest.raises(Exception, match="damaged or truncated|not an image"):
        client.predict(handle_file(str(bad)), "FGSM", 0.1, 1, "gray-box", 1, 1, 0, api_name="/defend")
    # the server keeps serving
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/ship_0.png")), "FGSM", 0.0, 1, "gray-box", 1, 1, 0,
                         api_name="/defend")
    assert "No attack applied" in out[15]


@pytest.mark.parametrize("attack,threat", [("PGD", "adaptive white-box"), ("CW (L2)", "gray-box"),
                                           ("Square (black-box)", "gray-box"), ("DeepFool (L2)", "adaptive white-box")])
def test_every_threat_model_and_attack_family_runs(client, attack, threat):
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/dog_0.png")), attack, 0.1, 3, threat, 2, 3, 1,
                         api_name="/defend")
    assert "Final prediction" in out[15] and out[13]


def test_concurrent_visitors_get_their_own_results(client):
    jobs = {name: client.submit(handle_file(str(ROOT / f"examples/cifar10/{name}_0.png")), "FGSM", 0.05, 1,
                                "gray-box", 2, 4, 0, api_name="/defend")
            for name in ("airplane", "frog", "truck", "horse")}
    for name, job in jobs.items():
        assert f"true label ({name})" in job.result()[15]


def test_bad_settings_are_clean_errors(client):
    with pytest.raises(Exception, match="greater than maximum value|capped at"):
        client.predict(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "PGD", 0.1, 5, "gray-box", 8, 100000, 0,
                       api_name="/defend")
