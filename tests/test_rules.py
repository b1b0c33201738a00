"""One place for each rule (issue 17): which image the classifier reads, eval mode, subsets.

Each test swaps the one implementation for a marked one and checks that every caller follows it:
a caller that decides on its own again makes the test fail."""
import pytest
import torch

from ism.app.demo import run_demo
from ism.app.request import RunRequest
from ism.attacks.adaptive import AdaptiveTarget
from ism.data.subsets import evenly_spaced, spread
from ism.defense import FINAL_INPUTS, Defense
from ism.eval.ablation import variant
from ism.eval.gallery import graybox_examples
from ism.models.baselines import Purified
from ism.models.inference import InferenceOnly

MARK = 0.25   # the marked "defended" image: every pixel 0.25


@pytest.fixture
def marked(monkeypatch):
    """Defense.defended_image replaced by a constant image: only callers that ask it see 0.25."""
    monkeypatch.setattr(Defense, "defended_image",
                        lambda self, x, *a, **k: torch.full_like(x, MARK) + 0 * x)


@pytest.mark.parametrize("gate", [True, False])
def test_read_applies_the_gate_to_the_defended_image(tiny_defense, marked, gate):
    d = variant(tiny_defense, gate=gate)
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        r = d.read(x)
        att = d.detection(x).attacked
    defended = ~att if gate else torch.zeros_like(att)      # True where the input is let through
    for i in range(6):
        want = x[i] if defended[i] else torch.full_like(x[i], MARK)
        assert torch.equal(r.image[i], want)
        assert r.source[i] == ("input" if defended[i] else d.config.final_input)
    assert torch.equal(r.logits, d.classifier(r.image)) and torch.equal(d.predict(x), r.logits)


def test_gallery_demo_and_adaptive_attacker_read_through_defense(tiny_defense, marked):
    d = variant(tiny_defense, gate=False)                   # every input defended: the marked image
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([1, 2])
    reads, _ = graybox_examples(d, x, y, "fgsm", 8 / 255)["classifier reads"]
    assert torch.all(reads == MARK)
    *_, last = run_demo(d, x[:1], 1, RunRequest(None, "fgsm", 8 / 255, 1, "gray-box", 1, 2))
    assert last.final.image.min() == last.final.image.max()   # the uniform marked image, displayed
    with torch.no_grad():
        assert torch.equal(AdaptiveTarget(d)(x), d.classifier(torch.full_like(x, MARK)))


@pytest.mark.parametrize("mode", FINAL_INPUTS)
def test_defended_image_modes(tiny_defense, mode):
    x = torch.rand(2, 3, 32, 32)
    pur, regen = torch.rand_like(x), torch.rand_like(x)
    want = {"purified": pur, "regenerated": regen, "mean": (pur + regen) / 2}[mode]
    assert torch.equal(tiny_defense.defended_image(x, pur, regen, final_input=mode), want)
    # BPDA: the same value forward, the identity (through the purified image) backward
    p = pur.clone().requires_grad_(True)
    out = tiny_defense.defended_image(x, p, regen, final_input=mode, bpda=True)
    assert torch.allclose(out, want)
    out.sum().backward()
    assert torch.equal(p.grad, torch.ones_like(p))
    with pytest.raises(ValueError, match="final_input"):
        tiny_defense.defended_image(x, pur, regen, final_input="raw")


@pytest.mark.parametrize("make", [lambda d: d, lambda d: AdaptiveTarget(d), lambda d: Purified(d.ism, d.classifier)])
def test_inference_pipelines_stay_in_eval_mode(tiny_defense, make):
    m = make(tiny_defense)
    assert isinstance(m, InferenceOnly)
    m.train()
    assert not any(mod.training for mod in m.modules())


def test_subsets_spread_over_every_class():
    labels = torch.arange(10).repeat_interleave(1000)            # a class-sorted test set
    for k in (10, 200, 2000, 3333):
        idx = evenly_spaced(len(labels), k)
        assert len(idx) == k == len(set(idx.tolist())) and idx.max() < len(labels)
        assert torch.bincount(labels[idx], minlength=10).min() >= k // 10
    assert len(evenly_spaced(5723, 2000)) == 2000 and torch.equal(evenly_spaced(7, None), torch.arange(7))
    s = spread(10_000, 100, 0)
    assert torch.equal(s, spread(10_000, 100, 0)) and not torch.equal(s, spread(10_000, 100, 1))
    assert len(torch.unique(labels[s])) == 10


def test_seeded_runs_leave_the_global_rng_alone(tiny_defense):
    from ism.app.live import measure_curves

    torch.manual_seed(123)
    x1, x2 = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    before = torch.random.get_rng_state()
    run = list(run_demo(tiny_defense, x1, 1, RunRequest(None, "pgd", 8 / 255, 2, "gray-box", 1, 2, seed=7)))
    assert run[-1].done
    measure_curves(tiny_defense, x2, torch.tensor([0, 1]), [8 / 255], steps=2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_concurrent_seeded_attacks_do_not_reseed_each_other(tiny_defense):
    """Two visitors' PGD runs at once give what each gives alone (the random start is seeded)."""
    import threading

    from ism.attacks.standard import make_attack, seeded

    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])

    def attack(seed):
        with seeded(seed):
            return make_attack("pgd", tiny_defense.classifier, 8 / 255, steps=1)(x, y)

    alone = {s: attack(s) for s in (1, 2)}
    bad = []

    def visitor(s):
        for _ in range(15):
            if not torch.equal(attack(s), alone[s]):
                bad.append(s)

    threads = [threading.Thread(target=visitor, args=(s,)) for s in (1, 2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not bad


@pytest.mark.parametrize("gate", [True, False])
def test_the_refusing_target_reads_what_the_defense_reads_and_counts_a_refusal_as_the_attack_failing(
        tiny_defense, marked, gate):
    """RefusalTarget (the defense that refuses what its detector flags): a picture the detector lets through is
    read as the defense reads it (with a gate: the input; without: the defended image); a flagged one counts as the
    true label, so an attacker must both fool the classifier and slip past the detector."""
    import torch.nn.functional as F

    from ism.attacks.adaptive import RefusalTarget, make_refusal_attack

    d = variant(tiny_defense, gate=gate)
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([1, 2, 3])
    t = RefusalTarget(d)
    t.labels = y
    with torch.no_grad():
        t._shift = 100.0                                       # the detector never flags: the defense's reading
        read = x if gate else torch.full_like(x, MARK)
        assert torch.allclose(t(x), F.log_softmax(d.classifier(read).float(), 1), atol=1e-4)
        t._shift = -100.0                                      # it always flags: refused, the attack failed
        assert torch.allclose(t(x)[torch.arange(3), y], torch.zeros(3), atol=1e-4)
    xa = make_refusal_attack(d, 8 / 255, steps=2)(x, y)
    assert xa.shape == x.shape and (xa - x).abs().max() <= 8 / 255 + 1e-6


@pytest.mark.parametrize("threshold", [-1.0, 2.0])     # the detector flags every picture / never one
def test_the_refusal_section_counts_refused_and_right_pictures(tiny_defense, monkeypatch, threshold):
    """The evaluation's refusal section (what refusing every flagged picture would give): a detector that flags
    everything stops every attack and refuses every picture, noisy or clean; one that never flags refuses none,
    and stops exactly the attacked pictures the pipeline still answers right."""
    from ism.eval.evaluation import EvalConfig, Evaluation

    monkeypatch.setattr(Defense, "threshold", property(lambda self: threshold))
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (6, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(6) % 10
    ev = Evaluation(tiny_defense, images, labels, EvalConfig(adaptive_images=None, batch_size=3, steps=1,
                                                             refusal_eps=[8 / 255]))
    r = ev.run(["refusal"])["refusal"]["pgd@0.0314"]
    if threshold < 0:
        assert all(r[k] == 1 for k in ("clean_refused", "noise1_refused", "noise2_refused", "graybox_refused",
                                       "graybox_stopped", "adaptive_stopped"))
        assert r["clean_right_let_through"] == 0
    else:
        assert all(r[k] == 0 for k in ("clean_refused", "noise1_refused", "graybox_refused", "adaptive_refused"))
        assert r["clean_right_let_through"] == ev.res["clean"]["pipeline"]
        assert r["graybox_stopped"] == r["graybox_right_let_through"] and r["images"] == 6
