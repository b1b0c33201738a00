"""Shared fixtures: tiny random defenses for shape tests, the shipped weights for behaviour tests,
and a handful of real CIFAR-10 test images from ../shared (never downloaded)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("ISM_TEST_WEIGHTS", ROOT / "weights" / "cifar10"))
DATA = Path(os.environ.get("ISM_CIFAR10", ROOT.parent / "shared" / "data" / "cifar10"))
CELEBA = Path(os.environ.get("ISM_CELEBA", ROOT.parent / "shared" / "data" / "celeba"))
CELEBA_WEIGHTS = ROOT / "weights" / "celeba"

torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_parts(image_size: int = 32):
    """Randomly initialised components with small widths (shapes only, not behaviour)."""
    from ism import (
        Classifier,
        ClassifierConfig,
        DetectorConfig,
        Discriminator,
        DiscriminatorConfig,
        Generator,
        ISMConfig,
        ISMNetwork,
        PerturbationDetector,
    )

    torch.manual_seed(0)
    ism = ISMNetwork(ISMConfig(image_size=image_size, latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8]))
    return {
        "classifier": Classifier(ClassifierConfig(image_size=image_size, channels=[8, 8, 8, 8], hidden=16,
                                                  class_names=[f"c{i}" for i in range(10)])),
        "ism": ism,
        "detector": PerturbationDetector(DetectorConfig(image_size=image_size, widths=[8, 8, 8])),
        "generator": Generator(ism.generator_config()),
        "discriminator": Discriminator(DiscriminatorConfig(image_size=image_size, widths=[8, 8, 8])),
    }


def pipeline_parts(image_size: int = 32):
    """``tiny_parts`` without the discriminator, which trains the generator and is not part of a Defense."""
    parts = tiny_parts(image_size)
    parts.pop("discriminator")
    return parts


@pytest.fixture
def tiny_defense():
    from ism import Defense

    return Defense(**pipeline_parts())


@pytest.fixture
def tiny_weights(tmp_path):
    """A tiny defense saved in the shipped layout; returns its folder."""
    from ism.defense import DefenseConfig, save_defense_config

    root = tmp_path / "tiny"
    for name, m in tiny_parts().items():
        m.save_pretrained(root / name, config=m.config)
    save_defense_config(root, DefenseConfig(regen_steps=3, regen_restarts=2))
    return root


@pytest.fixture(scope="session")
def defense():
    from ism import load_defense

    return load_defense(WEIGHTS)


@pytest.fixture(scope="session")
def real_images():
    """20 CIFAR-10 test images (2 per class) as floats in [0, 1] and their labels."""
    from torchvision.io import decode_image

    xs, ys = [], []
    classes = sorted(p.name for p in (DATA / "test").iterdir())
    for label, c in enumerate(classes):
        for f in sorted((DATA / "test" / c).glob("*.jpg"))[:2]:
            xs.append(decode_image(str(f)).float() / 255)
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


@pytest.fixture(scope="session")
def app_demo():
    """The real app, built from the shipped weights with the default serving settings, launched on
    localhost for the session; ``app_demo.url`` is its address."""
    import app
    from ism import load_defense
    from ism.app.serve import ServeConfig

    serve = ServeConfig()
    defenses = {"cifar10": load_defense(WEIGHTS)}
    if (CELEBA_WEIGHTS / "defense.json").is_file():
        defenses["celeba"] = load_defense(CELEBA_WEIGHTS)
    demo = app.build_demo(defenses, serve=serve)
    demo.queue(default_concurrency_limit=serve.concurrency, max_size=serve.queue_size)
    _, demo.url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                                 **app.launch_options(serve))
    yield demo
    demo.close()


@pytest.fixture(scope="session")
def app_url(app_demo):
    return app_demo.url


@pytest.fixture
def slow_runs(monkeypatch):
    """Runs that last: each state a run streams to a visitor is held back 3 s on its way (the server itself never
    paces a run: the page plays regeneration back), so a test can stop or switch in the middle of one."""
    import time

    from ism.app import runner

    real = runner.Follower.__iter__

    def paced(self):
        for state in real(self):
            if state is not None and not isinstance(state, runner.Waiting):
                time.sleep(3)
            yield state
    monkeypatch.setattr(runner.Follower, "__iter__", paced)
