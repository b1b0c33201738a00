"""Bad inputs to the public API raise a clear error naming the problem."""
import pytest
import torch

pytestmark = pytest.mark.slow

BAD = [
    (torch.rand(3, 32, 32), ValueError, "4-D"),
    (torch.rand(2, 1, 32, 32), ValueError, r"\(N, 3, 32, 32\)"),
    (torch.rand(2, 3, 64, 64), ValueError, r"\(N, 3, 32, 32\)"),
    ((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8), TypeError, "divide uint8 images by 255"),
    (torch.randint(0, 2, (2, 3, 32, 32)), TypeError, "float tensor"),
    (torch.rand(2, 3, 32, 32) * 2, ValueError, r"values in \[0, 1\]"),
    (torch.rand(2, 3, 32, 32) - 0.5, ValueError, r"values in \[0, 1\]"),
    (torch.full((2, 3, 32, 32), float("nan")), ValueError, "NaN"),
    (torch.full((1, 3, 32, 32), float("inf")), ValueError, "NaN or Inf"),
    (torch.rand(0, 3, 32, 32), ValueError, "empty batch"),
    (torch.zeros(5000, 3, 32, 32), ValueError, "batches of at most"),
    ([[0.5]], TypeError, "torch.Tensor"),
    (None, TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("method", ["detect", "purify", "predict", "regenerate", "detection"])
@pytest.mark.parametrize("x,err,msg", BAD)
def test_bad_inputs(tiny_defense, method, x, err, msg):
    with pytest.raises(err, match=msg):
        out = getattr(tiny_defense, method)(x)
        if method == "regenerate":
            next(out)


def test_wrong_device(tiny_defense):
    with pytest.raises(ValueError, match="is on meta but the defense is on cpu"):
        tiny_defense.predict(torch.empty(2, 3, 32, 32, device="meta"))


def test_bad_regeneration_settings(tiny_defense):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="restarts >= 1"):
        next(tiny_defense.regenerate(x, restarts=0))
    with pytest.raises(ValueError, match="target must be"):
        next(tiny_defense.regenerate(x, target="noise"))


def test_valid_input_shapes(tiny_defense):
    x = torch.rand(4, 3, 32, 32)
    assert tiny_defense.detect(x).shape == (4,)
    assert ((tiny_defense.detect(x) >= 0) & (tiny_defense.detect(x) <= 1)).all()
    assert tiny_defense.purify(x).shape == x.shape
    assert tiny_defense.predict(x).shape == (4, 10)
    frames = list(tiny_defense.regenerate(x, steps=3, restarts=2))
    assert 1 <= len(frames) <= 4 and all(f.shape == x.shape for f in frames)


def test_attack_factory_rejects_bad_arguments(tiny_defense):
    from ism import make_attack

    with pytest.raises(ValueError, match="unknown attack"):
        make_attack("magic", tiny_defense.classifier, 0.1)
    with pytest.raises(ValueError, match="eps must lie"):
        make_attack("pgd", tiny_defense.classifier, 2.0)


def test_defense_never_enters_training_mode(tiny_defense):
    tiny_defense.train()
    assert not any(m.training for m in tiny_defense.modules())


def test_convolutions_run_channels_last_with_the_same_answers():
    """Defense stores convolution weights channels-last (the CPU speed-up); logits and the input gradient
    an attack follows are those of the modules as trained, to float rounding."""
    import copy

    from conftest import pipeline_parts

    from ism import Defense

    parts = pipeline_parts()
    plain = copy.deepcopy(parts["classifier"]).eval()
    d = Defense(**parts)
    convs = [m.weight for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = torch.rand(3, 3, 32, 32)
    grads = []
    for model in (d.classifier, plain):
        xi = x.clone().requires_grad_(True)
        logits = model(xi)
        (g,) = torch.autograd.grad(logits.logsumexp(1).sum(), xi)
        grads.append((logits.detach(), g))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5) and torch.allclose(grads[0][1], grads[1][1], atol=1e-5)
