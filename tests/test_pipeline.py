"""The shipped CIFAR-10 defense on real test images: it classifies, detects, purifies, regenerates."""
import pytest
import torch

from ism import make_attack

pytestmark = pytest.mark.slow


def test_classifier_and_pipeline_on_clean(defense, real_images):
    x, y = real_images
    with torch.no_grad():
        assert (defense.classifier(x).argmax(1) == y).float().mean() >= 0.6
        assert (defense.predict(x).argmax(1) == y).float().mean() >= 0.6
        p = defense.detect(x)
    assert p.shape == (20,)
    assert (p > defense.threshold).float().mean() <= 0.2  # clean images are rarely flagged


def test_graybox_attack_is_caught_and_undone(defense, real_images):
    # the classifier is adversarially trained, so PGD-10 at 8/255 fools it on about half of these images
    # (not all): the detector must still catch the attack, and purification must not lose ground
    x, y = real_images
    torch.manual_seed(0)
    xa = make_attack("pgd", defense.classifier, eps=8 / 255, steps=10)(x, y)
    with torch.no_grad():
        clean = (defense.predict(x).argmax(1) == y).float().mean()
        undefended = (defense.classifier(xa).argmax(1) == y).float().mean()
        defended = (defense.predict(xa).argmax(1) == y).float().mean()
        det = defense.detection(xa)
        clean_p = defense.detect(x)
    assert det.attacked.float().mean() >= 0.8
    # every attacked image scores above the median clean one (the detector ranks, not just thresholds)
    assert (det.probability > clean_p.median()).all()
    assert 0.01 < det.strength.mean() < 0.1     # it sees a faint attack, not a strong one
    assert undefended <= clean - 0.25           # the attack works on the bare classifier
    assert defended >= undefended and defended >= 0.4


def test_strong_attack_is_flagged_as_strong(defense, real_images):
    # at eps 0.3 the ISM (trained for small perturbations) no longer restores the class, but the
    # detector still flags every image and estimates the strength
    x, y = real_images
    torch.manual_seed(0)
    xa = make_attack("pgd", defense.classifier, eps=0.3, steps=10)(x, y)
    with torch.no_grad():
        det = defense.detection(xa)
    assert det.attacked.all() and det.strength.mean() > 0.2


def test_purify_and_regenerate_frames(defense, real_images):
    x, _ = real_images
    x = x[:4]
    with torch.no_grad():
        pur = defense.purify(x)
    assert pur.shape == x.shape and pur.min() >= 0 and pur.max() <= 1
    steps = list(defense.regenerate_steps(x, steps=8, restarts=3, seed=1))
    assert 1 <= len(steps) <= 9 and steps[-1].done and not any(s.done for s in steps[:-1])
    assert steps[-1].error.mean() < 0.9 * steps[0].error.mean()   # the search really moves towards the target
    again = list(defense.regenerate(x, steps=8, restarts=3, seed=1))
    assert torch.equal(again[-1], steps[-1].image)                   # a seed gives the same frames again
