"""Property-based tests (hypothesis) over the public API: for *any* input, a result of the promised
shape and range, or a ValueError/TypeError that names the problem; never another exception."""
import math

import pytest
import torch
from conftest import pipeline_parts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ism import Defense
from ism.app.demo import check_cap
from ism.app.request import (
    MAX_EPS,
    MAX_ITERATIONS,
    MAX_RESTARTS,
    THREATS,
    RunRequest,
)
from ism.app.serve import ServeConfig
from ism.attacks.standard import ATTACKS, MAX_STEPS
from ism.checks import check_images
from ism.data.images import ImageInputError, prepare_image

DEFENSE = Defense(**pipeline_parts())
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


@pytest.mark.slow
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


def _set_first(x, value):
    x[0, 0, 0, 0] = value
    return x


# Each corruption of a valid batch, and the words its error must contain. Built by construction, so the
# test does not restate check_images' rules: a valid batch must pass, each corruption must be named.
CORRUPTIONS = {
    "none": (lambda x, v: x, None),
    "integer dtype": (lambda x, v: (x * 255).to(torch.uint8), "float tensor"),
    "bool dtype": (lambda x, v: x > 0.5, "float tensor"),
    "complex dtype": (lambda x, v: x.to(torch.complex64), "float tensor"),
    "3-D": (lambda x, v: x[0], "4-D batch"),
    "5-D": (lambda x, v: x[None], "4-D batch"),
    "empty batch": (lambda x, v: x[:0], "empty batch"),
    "wrong channels": (lambda x, v: x[:, :1], "shape (N, 3, 32, 32)"),
    "wrong size": (lambda x, v: x[..., :31], "shape (N, 3, 32, 32)"),
    "NaN": (lambda x, v: _set_first(x, float("nan")), "NaN or Inf"),
    "Inf": (lambda x, v: _set_first(x, float("inf")), "NaN or Inf"),
    "above 1": (lambda x, v: x + 1 + v, "values in [0, 1]"),
    "below 0": (lambda x, v: x - 1 - v, "values in [0, 1]"),
}


@FAST
@given(spec=batches(), corruption=st.sampled_from(sorted(CORRUPTIONS)), v=st.floats(0.001, 10))
def test_any_tensor_is_accepted_or_refused_with_a_named_reason(spec, corruption, v):
    corrupt, words = CORRUPTIONS[corruption]
    x = corrupt(make(*spec).clone(), v)
    if words is None:
        assert DEFENSE.predict(x).shape == (x.shape[0], 10)
        return
    with pytest.raises((ValueError, TypeError)) as e:
        DEFENSE.predict(x)
    assert str(e.value).startswith("x ") and words in str(e.value), (corruption, str(e.value))


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
       restarts=st.integers(-2, 50), iterations=st.integers(-2, 2000))
def test_demo_settings_are_valid_or_a_value_error(attack, eps, steps, threat, restarts, iterations):
    """Accepted exactly when every setting is within its documented bound (the spec, written out)."""
    within = (attack in ATTACKS and threat in THREATS and 0 <= eps <= MAX_EPS and 1 <= steps <= MAX_STEPS
              and 1 <= restarts <= MAX_RESTARTS and 0 <= iterations <= MAX_ITERATIONS)
    try:
        ok = RunRequest(None, attack, eps, steps, threat, restarts, iterations, 0)
    except ValueError as e:
        assert str(e) and not within, f"refused valid settings: {e}"
        return
    assert within, "accepted settings outside their bounds"
    assert (ok.eps, ok.steps, ok.restarts, ok.iterations) == (eps, steps, restarts, iterations)


@given(max_seconds=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False)))
def test_a_runs_cap_is_positive_or_none(max_seconds):
    try:
        check_cap(max_seconds)
    except ValueError as e:
        assert "max_seconds" in str(e) and max_seconds is not None and not max_seconds > 0
        return
    assert max_seconds is None or max_seconds > 0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_an_image_or_a_clear_error(data):
    try:
        p = prepare_image(data, 32)
    except ImageInputError as e:
        assert str(e)
        return
    assert p.tensor.shape == (1, 3, 32, 32) and 0 <= float(p.tensor.min()) <= float(p.tensor.max()) <= 1


GOOD = {"ISM_CONCURRENCY": st.integers(1, 64).map(str), "ISM_THREADS": st.integers(1, 64).map(str),
        "ISM_QUEUE_SIZE": st.integers(1, 10_000).map(str),
        "ISM_MAX_SECONDS": st.floats(0.01, 1e6, allow_nan=False).map(repr),
        "ISM_PLAYBACK": st.floats(0, 1e3, allow_nan=False).map(repr)}
BAD = st.sampled_from(["0", "-3", "nan", "inf", "-inf", "abc", "1.5e", "0.0"])
BAD_ZERO_ALLOWED = st.sampled_from(["-3", "-0.5", "nan", "inf", "-inf", "abc", "1.5e"])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_serving_settings_from_any_environment(data):
    """Built from chosen values: all good ones are accepted (as given), any bad one is a ValueError
    that names its variable. ISM_MAX_SECONDS=nan would otherwise be accepted and then refuse every run."""
    names = data.draw(st.sets(st.sampled_from(sorted(GOOD))))
    bad = data.draw(st.sets(st.sampled_from(sorted(names)))) if names else set()
    env = {k: data.draw((BAD_ZERO_ALLOWED if k == "ISM_PLAYBACK" else BAD) if k in bad else GOOD[k]) for k in names}
    env["OTHER"] = data.draw(st.text(max_size=4))
    try:
        cfg = ServeConfig.from_env(env)
    except ValueError as e:
        assert bad and any(k in str(e) for k in bad), (env, e)
        return
    assert not bad, f"accepted {env}"
    for k, v in env.items():
        if k != "OTHER":
            got = getattr(cfg, k.removeprefix("ISM_").lower())
            assert got == type(got)(v) and math.isfinite(got) and (got >= 0 if k == "ISM_PLAYBACK" else got > 0)
    check_cap(cfg.max_seconds)     # a server's cap never refuses every run
