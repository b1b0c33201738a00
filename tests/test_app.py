"""The app, launched on localhost and driven through its named API endpoint with gradio_client."""
import pytest
from conftest import ROOT
from gradio_client import Client, handle_file

from ism.app.render import output

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_defend_returns_every_stage(client):
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "PGD", 0.3, 5, "gray-box", 2, 6, 0,
                         api_name="/defend")
    (orig, orig_lab, pert, pert_txt, adv, adv_lab, det, det_txt, pur, pur_lab, regen, regen_txt, frames,
     final, final_lab, verdict, notes, warnings, timings, final_txt, regen_plot, picture, counter, counter_txt) = out
    for img in (orig, pert, adv, pur, regen, final, counter):
        assert img and img.endswith(".png")   # lossless: the attacked pixels as the attack made them
    assert orig_lab["label"] and len(orig_lab["confidences"]) == 3
    assert "L∞ = 0.3" in pert_txt
    assert "The ISM's change to panel 3" in counter_txt and "(the attack's: 76.5)" in counter_txt   # panel 5's change
    assert det["label"] in ("ATTACKED", "clean") and "chance it was attacked" in det_txt
    assert 1 <= len(frames) <= 7
    assert "final answer" in verdict and ("caught the attack" in verdict or "missed the attack" in verdict)
    assert "true label, cat" in verdict
    assert "regeneration" in timings
    assert "the classifier reads" in final_txt
    assert regen_plot["columns"] == ["iteration", "difference from panel 5 (mean squared)"]   # the curve as numbers, one row an iteration
    assert [row[0] for row in regen_plot["data"]] == [str(i) for i in range(len(frames))]   # (a short run: names)
    assert picture and picture.endswith(".png")   # the run as one picture, for slides
    assert "matched the target" in regen_txt or "used all 6 iterations" in regen_txt   # why it stopped, in words


@pytest.mark.parametrize("seed", [None, 2**40, -3])   # (text is refused by the number field itself)
def test_a_bad_seed_is_one_sentence(client, seed):
    with pytest.raises(Exception, match="seed must be a whole number"):
        client.predict(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "FGSM", 0.05, 1, "gray-box", 1, 2, seed,
                       api_name="/defend")


def test_the_visitor_chooses_what_the_classifier_reads(client):
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "PGD", 0.1, 3, "gray-box", 1, 4, 0,
                         "cifar10", "regenerated image (GAN)", api_name="/defend")
    assert "reads panel 6, the redrawn picture (your choice; this defense reads the purified picture)" in \
        output(out, "final_text")


def test_bad_upload_is_a_clean_error(client, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # PNG signature, then nothing
    with pytest.raises(Exception, match="damaged or truncated|not an image"):
        client.predict(handle_file(str(bad)), "FGSM", 0.1, 1, "gray-box", 1, 1, 0, api_name="/defend")
    # the server keeps serving
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/ship_0.png")), "FGSM", 0.0, 1, "gray-box", 1, 1, 0,
                         api_name="/defend")
    assert "No attack (epsilon 0)" in output(out, "verdict")


def test_a_picture_outside_the_data_set_is_named_so(client, tmp_path):
    """An upload the data-set recogniser places outside the defense's data set gets one sentence under the
    headline (a face on CIFAR-10, a CIFAR-10 picture on CelebA); a CIFAR-10 picture that is not an example
    (mirrored) gets none, and neither is called right or wrong (no true label)."""
    from PIL import Image, ImageOps

    face = client.predict(handle_file(str(ROOT / "examples/celeba/female_0.png")), "FGSM", 0.03, 1, "gray-box", 1, 1, 0,
                          "cifar10", api_name="/defend")
    assert "This picture does not look like CIFAR-10's small photos" in output(face, "verdict")
    assert "the classifier still answers one of 'airplane', 'automobile'" in output(face, "verdict")
    assert "does not look like" not in output(face, "notes")   # said once, under the headline
    ImageOps.mirror(Image.open(ROOT / "examples/cifar10/ship_0.png")).save(tmp_path / "ship.png")
    ship = client.predict(handle_file(str(tmp_path / "ship.png")), "FGSM", 0.03, 1, "gray-box", 1, 1, 0, "cifar10",
                          api_name="/defend")
    assert "does not look like" not in output(ship, "verdict") + output(ship, "notes")
    for out in (face, ship):
        assert "true label" not in output(out, "verdict") and "own answer" in output(out, "notes")
    on_faces = client.predict(handle_file(str(ROOT / "examples/cifar10/ship_0.png")), "FGSM", 0.03, 1, "gray-box", 1, 1,
                              0, "celeba", api_name="/defend")
    assert "This picture does not look like CelebA's face photos" in output(on_faces, "verdict")
    assert "one of 'female', 'male'" in output(on_faces, "verdict")


@pytest.mark.parametrize("attack,threat", [("PGD", "adaptive white-box"), ("CW (L2)", "gray-box"),
                                           ("Square (black-box)", "gray-box"), ("DeepFool (L2)", "adaptive white-box")])
def test_every_threat_model_and_attack_family_runs(client, attack, threat):
    out = client.predict(handle_file(str(ROOT / "examples/cifar10/dog_0.png")), attack, 0.1, 3, threat, 2, 3, 1,
                         api_name="/defend")
    assert "final answer" in output(out, "verdict") and output(out, "final")


def test_concurrent_visitors_get_their_own_results(client):
    jobs = {name: client.submit(handle_file(str(ROOT / f"examples/cifar10/{name}_0.png")), "FGSM", 0.05, 1,
                                "gray-box", 2, 4, 0, api_name="/defend")
            for name in ("airplane", "frog", "truck", "horse")}
    for name, job in jobs.items():
        assert f"true label, {name}" in output(job.result(), "verdict")


def test_bad_settings_are_clean_errors(client):
    with pytest.raises(Exception, match="outside that range|capped at"):
        client.predict(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "PGD", 0.1, 5, "gray-box", 8, 100000, 0,
                       api_name="/defend")


def test_decompression_bomb_and_long_file_name_uploads(client, tmp_path):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")      # 400 Mpx in a ~50 KB file
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(buf.getvalue())
    with pytest.raises(Exception, match="too large"):
        client.predict(handle_file(str(bomb)), "FGSM", 0.1, 1, "gray-box", 1, 1, 0, api_name="/defend")
    long_name = tmp_path / ("a" * 200 + ".png")
    long_name.write_bytes((ROOT / "examples/cifar10/deer_0.png").read_bytes())
    out = client.predict(handle_file(str(long_name)), "FGSM", 0.05, 1, "gray-box", 1, 2, 0, api_name="/defend")
    assert "final answer" in output(out, "verdict") and "true label, deer" in output(out, "verdict")   # recognised by content


def test_cancelled_run_stops_computing(app_url, app_demo, slow_runs):
    import time

    # The server answers a cancel once the step in progress ends (gradio closes the generator between
    # yields), so the attack is kept short and the cancel request may wait that long on a busy machine.
    client = Client(app_url, verbose=False, httpx_kwargs={"timeout": 120})
    runs = app_demo.handler.active
    stopped_before = runs.stopped
    job = client.submit(handle_file(str(ROOT / "examples/cifar10/cat_0.png")), "PGD", 0.1, 5, "adaptive white-box",
                        8, 100, 0, api_name="/defend")       # 8 x 100 regeneration iterations: seconds of work
    t0 = time.time()
    while not job.outputs() and time.time() - t0 < 60:
        time.sleep(0.02)
    assert runs.count == 1, "the run never started"
    job.cancel()
    while runs.count and time.time() - t0 < 120:
        time.sleep(0.05)
    assert runs.count == 0 and runs.stopped == stopped_before + 1   # closed before its final state
    assert "final answer" not in str(output(job.outputs()[-1], "verdict"))


def test_nothing_is_placed_after_the_tabs(app_demo):
    """The page is the header, the data-set choice and the tabs: an update made while the page is built (the
    tabs' ``switch``) places no stray component below them (a gr.Plot made there showed a copy of the
    robustness curves under every tab)."""
    assert [type(c).__name__ for c in app_demo.children] == ["Markdown", "Form", "Tabs"]
