"""MagNet, DDSA, the latent-space attack, the gate switch and the ablation stages, on small inputs."""
import pytest
import torch

from ism.attacks.latent import LatentAttackConfig, latent_attack
from ism.eval.ablation import ablation_stages, variant
from ism.eval.metrics import auroc, roc_points
from ism.models.baselines import DDSA, DDSAConfig, MagNet, MagNetAutoencoder, Purified, jsd

pytestmark = pytest.mark.slow


def test_magnet_and_ddsa_shapes_ranges_and_round_trip(tmp_path, tiny_defense):
    x = torch.rand(3, 3, 32, 32)
    ae, dd = MagNetAutoencoder(), DDSA(DDSAConfig(widths=[8, 8], code=8))
    for m in (ae, dd):
        out = m(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        m.save_pretrained(tmp_path / type(m).__name__, config=m.config)
        back = type(m).from_pretrained(str(tmp_path / type(m).__name__))
        assert torch.allclose(back(x), out)
    magnet = MagNet(ae, tiny_defense.classifier)
    s = magnet.scores(x)
    assert s.shape == (3, 3) and (s >= 0).all()
    ae.config.recon_threshold, ae.config.jsd_thresholds = -1.0, [1e9, 1e9]
    assert magnet.rejected(x).all()          # every reconstruction error exceeds a negative threshold
    ae.config.recon_threshold = 1e9
    assert not magnet.rejected(x).any()
    assert Purified(dd, tiny_defense.classifier)(x).shape == (3, 10)
    code = dd.encoder(x)
    assert dd.sparsity(code) >= 0


def test_jsd_is_zero_for_equal_and_positive_for_different_logits():
    a, b = torch.randn(4, 10), torch.randn(4, 10)
    assert torch.allclose(jsd(a, a, 10.0), torch.zeros(4), atol=1e-6)
    assert (jsd(a, b, 1.0) > 0).all() and (jsd(a, b, 1.0) <= torch.log(torch.tensor(2.0)) + 1e-6).all()


def test_roc_points_match_auroc():
    neg, pos = torch.rand(500) * 0.5, 0.5 + torch.rand(500) * 0.5
    r = roc_points(neg, pos)
    assert (r["fpr"][0], r["tpr"][0]) == (1.0, 1.0) and (r["fpr"][-1], r["tpr"][-1]) == (0.0, 0.0)
    assert auroc(neg, pos) == 1.0 and max(t for f, t in zip(r["fpr"], r["tpr"]) if f == 0.0) == 1.0


def test_latent_attack_stays_in_budget(tiny_defense):
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    xa, ok = latent_attack(tiny_defense, x, y, 8 / 255, LatentAttackConfig(steps=3))
    assert xa.shape == x.shape and ok.shape == (4,) and ok.dtype == torch.bool
    assert (xa - x).abs().max() <= 8 / 255 + 1e-6 and xa.min() >= 0 and xa.max() <= 1


def test_gate_off_always_reads_the_purified_image(tiny_defense):
    x = torch.rand(5, 3, 32, 32)
    d = variant(tiny_defense, gate=False, final_input="purified")
    with torch.no_grad():
        assert torch.allclose(d.predict(x), d.classifier(d.ism(x)))


def test_ablation_stages_on_the_shipped_layout(tiny_weights):
    from ism import load_defense

    d = load_defense(tiny_weights)
    stages, skipped = ablation_stages(d, tiny_weights)   # no ablation/ folder: those stages are skipped
    assert "classifier alone" in skipped and "+ defensive distillation" in skipped
    names = [s.name for s in stages]
    # without `train robust` the deployed classifier is the FGSM-RS one, so that stage is kept
    assert names[:2] == ["+ adversarial training (FGSM-RS)", "+ ISM purification (always)"]
    assert stages[0].model is d.classifier and any("gating" in n for n in names)
    assert "+ adversarial training of ISM + classifier (PGD through the ISM)" in skipped
    assert sum(s.deployed for s in stages) == 1
    x = torch.rand(2, 3, 32, 32)
    for s in stages:
        m = s.model.predict if hasattr(s.model, "predict") else s.model
        with torch.no_grad():
            assert m(x).shape == (2, 10)


def test_ablation_stages_after_robust_training_without_kept_weights(tiny_weights):
    """`train robust` ran but kept no starting weights (CelebA): the deployed classifier is not
    labelled FGSM-RS, the pre-robust ISM stage is skipped, the robust stage is the deployed one."""
    import json

    from ism import load_defense
    from ism.app.tabs.how import how_text
    from ism.folders import ROBUST_MARKER, robust_trained

    d = load_defense(tiny_weights)
    assert not robust_trained(tiny_weights) and "was *not* adversarially trained" in how_text(d)
    (tiny_weights / ROBUST_MARKER).parent.mkdir()
    (tiny_weights / ROBUST_MARKER).write_text(json.dumps({"starting weights kept": []}))
    assert robust_trained(tiny_weights) and "python -m train robust" in how_text(d)
    stages, skipped = ablation_stages(d, tiny_weights)
    names = [s.name for s in stages]
    assert "+ adversarial training (FGSM-RS)" in skipped and "+ ISM purification (always)" in skipped
    assert names[0] == "+ adversarial training of ISM + classifier (PGD through the ISM)"
    assert stages[0].model.classifier is d.classifier and stages[0].model.ism is d.ism
    assert sum(s.deployed for s in stages) == 1


@pytest.mark.parametrize("final_input, warned", [("purified", False), ("regenerated", True)])
def test_regeneration_warnings_only_when_the_classifier_reads_regeneration(tiny_defense, final_input, warned):
    """Regeneration is always shown; its EOT/BPDA caveats apply only when the decision depends on it."""
    from ism.app.demo import run_demo
    from ism.app.request import RunRequest

    d = variant(tiny_defense, gate=False, final_input=final_input)
    *_, last = run_demo(d, torch.rand(1, 3, 32, 32), 0, RunRequest(None, "fgsm", 8 / 255, 1, "gray-box", 1, 2))
    assert last.regeneration and any("randomised" in w for w in last.warnings) == warned
