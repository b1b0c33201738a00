"""Property-based tests (hypothesis) over the public API: for *any* input, a result of the promised
shape and range, or a ValueError/TypeError that names the problem; never another exception."""
import math

import pytest
import torch
from conftest import tiny_parts
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ism import Defense
from ism.app.demo import MAX_EPS, MAX_REGEN_BUDGET, MAX_STEPS, DemoRequest
from ism.app.serve import ServeConfig
from ism.checks import MAX_BATCH, check_images
from ism.data.images import ImageInputError, prepare_image

DEFENSE = Defense(**tiny_parts())
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def batches(n=st.integers(1, 3)):
    """Valid image batches: any float dtype, values in [0, 1] including the exact ends."""
    return st.tuples(n, st.sampled_from(FLOATS), st.integers(0, 2**31 - 1), st.sampled_from(["rand", "zeros", "ones"]))


def make(n, dtype, seed, kind):
    g = torch.Generator().manual_seed(seed)
    x = {"rand": torch.rand(n, 3, 32, 32, generator=g), "zeros": torch.zeros(n, 3, 32, 32),
         "ones": torch.ones(n, 3, 32, 32)}[kind]
    return x.to(dtype)


@FAST
@given(batches())
def test_every_valid_batch_gets_answers_of_the_promised_shape(spec):
    x = make(*spec)
    n = len(x)
    logits = DEFENSE.predict(x)
    assert logits.shape == (n, 10) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    p = DEFENSE.detect(x)
    assert p.shape == (n,) and ((p >= 0) & (p <= 1)).all()
    pur = DEFENSE.purify(x)
    assert pur.shape == (n, 3, 32, 32) and pur.min() >= 0 and pur.max() <= 1


SHAPES = st.one_of(st.lists(st.integers(0, 40), min_size=0, max_size=5),
                   st.tuples(st.integers(0, 4), st.sampled_from([1, 3, 4]), st.sampled_from([31, 32]),
                             st.sampled_from([32, 33])).map(list))


@FAST
@given(shape=SHAPES, dtype=st.sampled_from([*FLOATS, torch.uint8, torch.int64, torch.bool, torch.complex64]),
       fill=st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.none()))
def test_any_tensor_is_accepted_or_refused_with_a_named_reason(shape, dtype, fill):
    assume(math.prod(shape) <= 200_000)
    x = (torch.rand(shape) if fill is None else torch.full(shape, fill)).to(dtype)
    valid = (x.is_floating_point() and x.dim() == 4 and 1 <= x.shape[0] <= MAX_BATCH and tuple(x.shape[1:]) == (3, 32, 32)
             and bool(torch.isfinite(x).all()) and float(x.min()) >= 0 and float(x.max()) <= 1)
    if valid:
        assert DEFENSE.predict(x).shape == (x.shape[0], 10)
    else:
        with pytest.raises((ValueError, TypeError)) as e:
            DEFENSE.predict(x)
        assert str(e.value).startswith("x ")   # names the argument, then the problem


@FAST
@given(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.floats(), max_size=3),
                 st.binary(max_size=10)))
def test_non_tensors_are_a_type_error(obj):
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_images(obj, channels=3, size=32)


@settings(max_examples=200, deadline=None)
@given(attack=st.sampled_from(["fgsm", "pgd", "cw", "square", "magic", ""]),
       eps=st.floats(allow_nan=True, allow_infinity=True), steps=st.integers(-5, 500),
       threat=st.sampled_from(["gray-box", "adaptive white-box", "omniscient"]),
       restarts=st.integers(-2, 50), iterations=st.integers(-2, 2000),
       max_seconds=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False)))
def test_demo_settings_are_valid_or_a_value_error(attack, eps, steps, threat, restarts, iterations, max_seconds):
    req = DemoRequest(attack, eps, steps, threat, restarts, iterations, 0, max_seconds)
    try:
        ok = req.validate()
    except ValueError as e:
        assert str(e)
        return
    assert 0 <= ok.eps <= MAX_EPS and 1 <= ok.steps <= MAX_STEPS
    assert ok.restarts >= 1 and ok.restarts * max(1, ok.iterations) <= MAX_REGEN_BUDGET


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_an_image_or_a_clear_error(data):
    try:
        p = prepare_image(data, 32)
    except ImageInputError as e:
        assert str(e)
        return
    assert p.tensor.shape == (1, 3, 32, 32) and 0 <= float(p.tensor.min()) <= float(p.tensor.max()) <= 1


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["ISM_CONCURRENCY", "ISM_THREADS", "ISM_QUEUE_SIZE", "ISM_MAX_SECONDS",
                                        "OTHER"]), st.text(max_size=6)))
def test_serving_settings_from_any_environment(env):
    try:
        cfg = ServeConfig.from_env(env)
    except ValueError as e:
        assert "ISM_" in str(e)
        return
    assert cfg.concurrency >= 1 and cfg.threads >= 1 and cfg.queue_size >= 1 and cfg.max_seconds > 0
