"""CelebA (Male attribute, 64x64): data, the shipped defense through the library API, and the app's
dataset selector."""
import pytest
import torch
from conftest import CELEBA, CELEBA_WEIGHTS, ROOT
from gradio_client import Client, handle_file

from ism.app.render import output

pytestmark = pytest.mark.slow

needs_weights = pytest.mark.skipif(not (CELEBA_WEIGHTS / "defense.json").is_file(), reason="no CelebA weights")


def test_celeba_split_is_the_male_attribute_at_64x64():
    from ism.data.datasets import load_split

    test = load_split(CELEBA, "test")            # recognised as CelebA from its attribute file
    assert test.images.shape == (5723, 3, 64, 64) and test.images.dtype == torch.uint8
    assert test.classes == ["female", "male"] and int(test.labels.sum()) == 1643   # data README: 1,643 male
    small = load_split(CELEBA, "test", dataset="celeba", image_size=32)   # the resolution is a config value
    assert small.images.shape == (5723, 3, 32, 32) and torch.equal(small.labels, test.labels)


def test_robust_training_of_celeba_flips_but_does_not_shift():
    """Aligned faces: the CelebA ISM never saw shifted faces, so `train robust` flips only."""
    from ism.data.datasets import augment
    from train.robust import robust_config

    assert robust_config("celeba").augment_shift == 0 and robust_config("cifar10").augment_shift == 4
    x = torch.rand(16, 3, 8, 8)
    out = augment(x, 0)
    assert all(torch.equal(o, a) or torch.equal(o, a.flip(2)) for o, a in zip(out, x))
    assert not all(torch.equal(o, a) or torch.equal(o, a.flip(2)) for o, a in zip(augment(x, 4), x))


@pytest.fixture(scope="module")
def celeba():
    from ism import load_defense
    from ism.data.datasets import load_split

    d = load_defense(CELEBA_WEIGHTS)
    test = load_split(CELEBA, "test")
    idx = torch.arange(0, len(test), len(test) // 60)[:60]
    return d, test.float(idx), test.labels[idx]


@needs_weights
def test_shipped_celeba_defense(celeba):
    from ism import make_attack

    d, x, y = celeba
    assert d.classes == ["female", "male"] and d.image_size == 64
    logits = d.predict(x)
    assert logits.shape == (60, 2)
    assert (logits.argmax(1) == y).float().mean() >= 0.85           # gender at 64x64 is an easy task
    x_adv = make_attack("pgd", d.classifier, 0.3, steps=5)(x, y)
    assert d.detection(x_adv).attacked.float().mean() >= 0.9      # a strong attack is caught
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\)"):
        d.predict(torch.rand(1, 3, 32, 32))


@needs_weights
def test_app_dataset_selector(app_url):
    client = Client(app_url, verbose=False)
    out = client.predict(handle_file(str(ROOT / "examples/celeba/male_0.png")), "PGD", 0.1, 5, "gray-box", 2, 4, 0,
                         "celeba", api_name="/defend")
    assert "final answer" in output(out, "verdict") and "true label, male" in output(out, "verdict")
    with pytest.raises(Exception, match="unknown dataset|not in the list of choices|choices"):
        client.predict(handle_file(str(ROOT / "examples/celeba/male_0.png")), "PGD", 0.1, 5, "gray-box", 2, 4, 0,
                       "imagenet", api_name="/defend")


@needs_weights
def test_an_api_call_that_leaves_the_strength_out_gets_the_defenses_own(app_url):
    """The page attacks faces at 16/255 and CIFAR-10 at 8/255; so does /defend when a caller leaves the strength,
    the regeneration and the reading out (gradio_client would fill them with the page's first defense's values)."""
    client = Client(app_url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/defend"]["parameters"]
    assert {p["parameter_name"]: p["parameter_default"] for p in api if p["parameter_name"] in
            ("eps", "restarts", "iterations", "read")} == dict.fromkeys(("eps", "restarts", "iterations", "read"))
    for key, strength in (("celeba", "0.0627"), ("cifar10", "0.0314")):
        out = client.predict(handle_file(str(ROOT / "examples/celeba/male_0.png")), "FGSM", steps=1, seed=0,
                             defense=key, api_name="/defend")
        assert f"L∞ = {strength}" in output(out, "perturbation_text"), key


@needs_weights
def test_how_it_works_is_true_to_each_defense(celeba):
    from conftest import WEIGHTS

    from ism import load_defense
    from ism.app.tabs.how import how_text

    for d in (celeba[0], load_defense(WEIGHTS)):   # both were hardened by `train robust`
        assert "python -m train robust" in how_text(d) and "was *not* adversarially trained" not in how_text(d)


def test_celeba_robust_recipe_is_what_the_shipped_weights_ran():
    """`python -m train all --dataset celeba` runs the four `train robust` runs the shipped weights came
    from (recorded in ablation/robust.json), as code rather than prose."""
    import json
    import re
    from dataclasses import asdict

    from train.robust import RobustTrainConfig, robust_recipe

    runs = json.loads((CELEBA_WEIGHTS / "ablation/robust.json").read_text())["runs"]
    stages = robust_recipe("celeba")
    assert len(runs) == len(stages) == 4
    for r, stage in zip(runs, stages):
        ran = {**asdict(RobustTrainConfig()), **r["train_config"]}
        if m := re.search(r"--epochs (\S+)", r["command"]):
            ran["epochs"] = float(m.group(1))      # --epochs overrode the config's value in those runs
        assert ran == asdict(stage), r["command"]


@pytest.fixture(scope="module")
def paper_faces():
    """CelebA's paper-recipe defense with the counter-change (ism/counter.py) and 60 test faces attacked by
    gray-box PGD-10 at 8/255."""
    from dataclasses import replace

    from ism import load_defense, make_attack
    from ism.data.datasets import load_split

    d = load_defense(ROOT / "weights" / "celeba-paper")
    d.config = replace(d.config, counter_bound=12 / 255, gate=False, coarse_from=None)   # (every face purified)
    test = load_split(CELEBA, "test")
    idx = torch.arange(0, len(test), len(test) // 60)[:60]
    x, y = test.float(idx), test.labels[idx]
    torch.manual_seed(0)
    return d, x, y, make_attack("pgd", d.classifier, 8 / 255, steps=10)(x, y)


def test_the_counter_change_moves_an_attacked_face_back_within_its_bound(paper_faces):
    """The ISM's auto-encoder decides what the face shows; the purified face is the attacked one moved by at most
    12/255 per pixel until the classifier reads it so: read right again, closer to the original than the attacked
    face, and a clean face the ISM agrees with passes unchanged."""
    from ism.eval.metrics import psnr

    d, x, y, xa = paper_faces
    with torch.no_grad():
        r, rc = d.read(xa), d.read(x)
        fooled = (d.classifier(x).argmax(1) == y) & (d.classifier(xa).argmax(1) != y)
        ism_reads = d.classifier(d.ism(xa)).argmax(1)
        plain = replace_counter(d, 0.0)
    assert fooled.sum() >= 10
    assert (r.purified - xa).abs().amax() <= 12 / 255 + 1e-6 and torch.equal(r.purified, d.purify(xa))
    right = d.classifier(r.purified).argmax(1) == y
    assert right[fooled].float().mean() >= 0.8                            # restored (the ISM alone: its blur)
    assert torch.equal(d.classifier(r.purified).argmax(1)[fooled], ism_reads[fooled])   # the ISM decided
    assert psnr(r.purified, x)[fooled].mean() > psnr(xa, x)[fooled].mean() + 2   # closer to the original
    with torch.no_grad():
        z = d.classifier(x)
        agree = (z.argmax(1) == d.classifier(d.ism(x)).argmax(1)) & ((z[:, 0] - z[:, 1]).abs() >= 1)
    assert agree.sum() >= 30 and torch.equal(rc.purified[agree], x[agree])   # left exactly as it was
    # the detector still reads x - ISM(x): its verdicts do not depend on the counter-change
    with torch.no_grad():
        assert torch.equal(plain.detection(xa).probability, r.detection.probability)
    from ism.app.tabs.how import how_text

    assert "at most 12/255 per pixel" in how_text(d) and "counter-change" not in how_text(plain)   # how it works


def replace_counter(d, bound):
    from dataclasses import replace

    from ism import Defense

    return Defense(d.classifier, d.ism, d.detector, d.generator, replace(d.config, counter_bound=bound))


def test_the_face_generator_redraws_the_picture_the_defense_reads(paper_faces):
    """The faces' generator can draw a face (its own detail-path encoder): started from its code of the purified
    face it is closer to the original than Table 2's 128-d blur (17.5 dB); where ``coarse_from`` has the defense
    read the auto-encoder's blur (a strong attack), regeneration redraws that blur, not the counter-changed
    picture, whose attack a generator that draws faces would copy."""
    from dataclasses import replace

    from ism.eval.metrics import psnr

    d, x, y, xa = paper_faces
    assert d.generator.encoder is not None and d.generator.config.detail_channels
    with torch.no_grad():
        first = next(iter(d.regenerate_steps(xa, steps=0, restarts=1))).image
        assert torch.allclose(first, d.generator(d.generator.encode(d.purified(xa, d.ism(xa)))), atol=1e-5)
        assert psnr(first, x).mean() > 22
        coarse = replace_counter(d, 12 / 255)
        coarse.config = replace(coarse.config, coarse_from=0.0)          # every face read on the blur
        blur = next(iter(coarse.regenerate_steps(xa, steps=0, restarts=1))).image
        assert torch.allclose(blur, d.generator(d.generator.encode(d.ism.reconstruct(xa))), atol=1e-5)
    from ism.app.demo import run_demo
    from ism.app.request import RunRequest

    *_, run = run_demo(coarse, x[:1], int(y[0]), RunRequest(attack="fgsm", eps=0.3, restarts=1, iterations=1))
    assert "It redrew the ISM's rebuilt (blurry) picture, not panel 5" in run.regen_stop      # the page says so


def test_an_adaptive_attacker_sees_the_counter_change_through_the_ism(paper_faces):
    """Through the pipeline: the counter-changed face forward, the ISM's gradient backward (it decides the class
    the counter-change aims for), so the adaptive attack still has a gradient and still reads what the defense
    answers."""
    from ism.attacks.adaptive import AdaptiveTarget

    d, x, y, xa = paper_faces
    target = AdaptiveTarget(d)
    inp = xa[:4].clone().requires_grad_(True)
    out = target(inp)
    with torch.no_grad():
        assert torch.allclose(out, d.predict(xa[:4]), atol=1e-4)
    (g,) = torch.autograd.grad(out[:, 0].sum(), inp)
    assert g.abs().sum() > 0
    # a face attacked far beyond the bound is read on the auto-encoder's blur (``coarse_from``), and the attacker
    # through the pipeline reads what the defense reads there too
    from dataclasses import replace

    from ism import make_attack

    coarse = replace_counter(d, 12 / 255)
    coarse.config = replace(coarse.config, coarse_from=0.1)
    strong = make_attack("pgd", d.classifier, 0.3, steps=3)(x[:2], y[:2])
    with torch.no_grad():
        r = coarse.read(torch.cat([xa[:2], strong]))
        assert r.coarse.tolist() == [False, False, True, True]
        assert torch.allclose(r.image[2:], d.ism.reconstruct(strong), atol=1e-6)
        assert torch.allclose(AdaptiveTarget(coarse)(torch.cat([xa[:2], strong])), r.logits, atol=1e-4)
