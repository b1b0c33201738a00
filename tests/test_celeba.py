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
