"""Every component: output shapes and value ranges (tiny configs), and the paper-size layers."""
import pytest
import torch
from conftest import pipeline_parts, tiny_parts

from ism import Classifier, ClassifierConfig, ISMConfig, ISMNetwork


def test_component_shapes_and_ranges():
    p = tiny_parts()
    x = torch.rand(5, 3, 32, 32)
    logits = p["classifier"](x)
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()
    out = p["ism"](x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert p["ism"].encode(x).shape == (5, 16)
    a, lv = p["detector"](x - out)
    assert a.shape == (5,) and lv.shape == (5, len(p["detector"].config.eps_levels))
    s = p["detector"].strength(lv)
    assert (s >= 0).all() and (s <= max(p["detector"].config.eps_levels)).all()
    g = p["generator"](torch.randn(5, 16))
    assert g.shape == x.shape and g.min() >= 0 and g.max() <= 1
    assert p["discriminator"](x).shape == (5,)


def test_paper_sizes():
    """Defaults are the paper's Table 1 / Table 2 widths; 64x64 works too (CelebA-sized)."""
    clf = Classifier()
    convs = [m.out_channels for m in clf.features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [128, 256, 128, 64] and clf.head[1].out_features == 1024
    ism = ISMNetwork()
    enc = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in ism.encoder.net if isinstance(m, torch.nn.Conv2d)]
    assert enc == [(64, 7, 2), (128, 3, 2), (256, 3, 2), (256, 5, 2)]
    assert ism.encoder.net[-1].out_features == 128
    big = ISMNetwork(ISMConfig(image_size=64))
    assert big(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    assert Classifier(ClassifierConfig(image_size=64, channels=[8, 8, 8, 8], hidden=8))(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_airbench_classifier():
    """The shipped CIFAR-10 classifier's architecture: airbench94's conv groups, any input size."""
    clf = Classifier(ClassifierConfig(arch="airbench", channels=[8, 16, 16, 16]))
    assert clf(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    assert clf(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    convs = [m.out_channels for m in clf.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [8, 16, 16, 16, 16, 16, 16]
    import pytest
    with pytest.raises(ValueError, match="arch must be one of"):
        Classifier(ClassifierConfig(arch="resnet"))


def test_preact18_classifier(tmp_path):
    """PreActResNet-18 (Wong et al. 2020's net): 11.17M weights at its own widths (fast_adversarial's
    count), stride 2 from the second stage, any input size; saved and loaded through the Hub format."""
    clf = Classifier(ClassifierConfig(arch="preact18", channels=[64, 128, 256, 512]))
    assert sum(p.numel() for p in clf.parameters()) == 11_172_170     # its final BN included
    small = Classifier(ClassifierConfig(arch="preact18", channels=[8, 8, 16, 16])).eval()
    x = torch.rand(2, 3, 32, 32)
    maps = small.features[:-2](x)
    assert maps.shape == (2, 16, 4, 4)       # 32 / 2**3 after stages 2-4
    assert small(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    small.save_pretrained(tmp_path)
    again = Classifier.from_pretrained(tmp_path).eval()
    assert again.config.arch == "preact18" and torch.equal(again(x), small(x))


def test_ism_detail_path_is_the_generator_latent():
    """With detail_channels, the ISM code is [128-d code, detail map]; its decoder is the generator, so
    G(encode(x)) is ISM(x) and regeneration can start from it."""
    from ism import Generator, regenerate_steps

    ism = ISMNetwork(ISMConfig(latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8],
                               detail_channels=4)).eval()
    x = torch.rand(3, 3, 32, 32)
    z = ism.encode(x)
    assert z.shape == (3, 16 + 4 * 8 * 8) == (3, ism.decoder.config.z_dim)
    G = Generator(ism.generator_config()).eval()
    G.load_state_dict(ism.decoder.state_dict())
    with torch.no_grad():
        assert torch.allclose(G(z), ism(x), atol=1e-6)
        # the detail map matters: changing it changes the image
        z2 = z.clone()
        z2[:, 16:] += 1
        assert not torch.allclose(G(z2), G(z), atol=1e-3)
    assert G.sample_latent(5).shape == (5, G.config.z_dim)
    *_, last = regenerate_steps(G, x, z0=z, steps=2, restarts=2)
    assert last.image.shape == x.shape
    # Table 2's plain auto-encoder is unchanged (the CelebA weights and the paper recipe use it)
    assert ISMNetwork(ISMConfig()).encode(x).shape == (3, 128)


def test_ism_refiner_starts_as_identity_and_keeps_the_instance_code(tmp_path):
    """refine_width: ISM(x) = refiner(x, auto-encoder(x)); untrained it returns x itself, the 128-d code and
    the generator's latent are the auto-encoder's, and the config round-trips through the Hub format."""
    small = dict(latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8])
    plain = ISMNetwork(ISMConfig(**small)).eval()
    ism = ISMNetwork(ISMConfig(**small, refine_width=4)).eval()
    missing = ism.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refiner.") for k in missing)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ism(x), x)                                  # zero-initialised last conv
        assert torch.equal(ism.reconstruct(x), plain(x))
        assert torch.equal(ism.encode(x), plain.encode(x)) and ism.encode(x).shape == (3, 16)
        torch.nn.init.normal_(ism.refiner.out.weight, std=0.1)
        y = ism(x)
    assert not torch.equal(y, x) and y.min() >= 0 and y.max() <= 1
    assert ism.generator_config() == plain.generator_config()
    ism.save_pretrained(tmp_path)
    again = ISMNetwork.from_pretrained(tmp_path).eval()
    assert again.config.refine_width == 4
    with torch.no_grad():
        assert torch.equal(again(x), y)


def test_strong_attacks_are_read_on_the_auto_encoders_reconstruction():
    """``coarse_from``: an input the detector estimates attacked at that epsilon or more is read on the ISM's
    auto-encoder reconstruction (blurry), the others on its refined output; without a refiner it does nothing."""
    from dataclasses import replace

    from conftest import pipeline_parts

    from ism import Defense
    from ism.defense import DefenseConfig

    parts = pipeline_parts()
    small = dict(latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8])
    ism = ISMNetwork(ISMConfig(**small, refine_width=4)).eval()
    torch.nn.init.normal_(ism.refiner.out.weight, std=0.1)
    parts["ism"] = ism
    parts["detector"].config.threshold = -1.0                 # every input judged attacked
    x = torch.rand(4, 3, 32, 32)
    d = Defense(**parts, config=DefenseConfig(gate=True, final_input="purified"))
    with torch.no_grad():
        strength = d.detection(x).strength
        cut = float(strength.median())
        never = d.read(x)
        d.config = replace(d.config, coarse_from=cut)
        r = d.read(x)
        strong = strength >= cut
        assert never.coarse is None and r.coarse.tolist() == strong.tolist() and 0 < strong.sum() < 4
        assert torch.allclose(r.image[strong], ism.reconstruct(x)[strong].to(r.image.dtype), atol=1e-6)
        assert torch.allclose(r.image[~strong], ism(x)[~strong].to(r.image.dtype), atol=1e-6)
        assert torch.allclose(r.purified, ism(x).to(r.purified.dtype), atol=1e-6)   # panel 5 stays the refined image
        plain = Defense(**pipeline_parts(), config=DefenseConfig(coarse_from=0.0))
        assert plain.read(x).coarse is None                   # no refiner: nothing to choose between


def test_a_bounded_refiner_changes_no_pixel_by_more_than_its_bound(tmp_path):
    """With refine_bound b, the refiner's change to its input is b * tanh(r / b): at most b on every pixel,
    however large r is; the bound travels with the weights (config.json)."""
    b = 12 / 255
    ism = ISMNetwork(ISMConfig(refine_width=8, refine_bound=b)).eval()
    torch.nn.init.normal_(ism.refiner.out.weight, std=5.0)          # a refiner that wants large changes
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        change = (ism(x) - x).abs()
    assert change.max() <= b + 1e-6 and change.max() > b / 2
    ism.save_pretrained(tmp_path)
    again = ISMNetwork.from_pretrained(str(tmp_path)).eval()
    assert again.config.refine_bound == b
    with torch.no_grad():
        assert torch.allclose(again(x), ism(x))
    unbounded = ISMNetwork(ISMConfig(refine_width=8)).eval()
    unbounded.load_state_dict(ism.state_dict())
    with torch.no_grad():
        assert (unbounded(x) - x).abs().max() > b                    # the same weights without the bound


def test_picture_figures_say_what_the_eye_sees():
    from ism.eval.pictures import picture_figures

    x = torch.full((3, 3, 8, 8), 0.5)
    attacked = x + 8 / 255                        # PSNR ~30 dB
    purified = x + torch.tensor([2, 12, 8]).view(3, 1, 1, 1) / 255   # closer, further, as far
    y = torch.tensor([0, 1, 2])
    f = picture_figures(x, y, attacked, purified, torch.tensor([True, True, False]), torch.tensor([0, 2, 2]),
                        clean_out=x, clean_read=y)
    assert f["fooled"] == 2 and f["closer"] == 0.5 and f["restored"] == 0.5
    assert f["psnr_purified"] < f["psnr_attacked"] + 10 and abs(f["largest_change_255"] - 6) < 0.01
    assert f["psnr_clean"] == 99 and f["clean_accuracy"] == 1.0


def test_a_generator_with_its_own_encoder_starts_regeneration_from_its_code(tmp_path):
    """enc_widths: the generator carries a detail-path encoder, so a defense whose ISM keeps Table 2's 128-d code
    (the paper's recipe) regenerates from the generator's own code of the target, not the ISM's; the encoder
    round-trips through the Hub format."""
    from ism import Defense, Generator
    from ism.models.gan import GeneratorConfig

    parts = pipeline_parts()
    src = ISMNetwork(ISMConfig(latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8], detail_channels=4)).eval()
    G = Generator(GeneratorConfig(16, widths=[8, 8, 8, 8], detail_channels=4, enc_widths=[8, 8, 8, 8])).eval()
    G.load_state_dict({**src.decoder.state_dict(), **{f"encoder.{k}": v for k, v in src.encoder.state_dict().items()}})
    G.save_pretrained(tmp_path)
    G = Generator.from_pretrained(tmp_path).eval()
    d = Defense(**{**parts, "generator": G})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z = d.start_latent(x)
        assert z.shape == (2, 16 + 4 * 8 * 8) and torch.allclose(z, src.encode(x), atol=1e-6)
        first = next(iter(d.regenerate_steps(x, steps=0, restarts=1, target="input")))
        assert torch.allclose(first.image, src(x), atol=1e-5)    # restart 0 is G(its own code of x)
    with pytest.raises(ValueError, match="no encoder"):
        parts["generator"].encode(x)
    assert torch.equal(Defense(**parts).start_latent(x), parts["ism"].encode(x))


def test_pictures_row_says_what_the_eye_sees_on_the_fooled_pictures():
    from ism.eval.evaluation import pictures_row

    eye = {"psnr_attacked": torch.tensor([30.0, 31.0]), "psnr_purified": torch.tensor([32.0, 29.0]),
           "psnr_regenerated": torch.tensor([20.0, 25.0]), "counter_change": torch.tensor([0.02, 12 / 255, 0.01])}
    row = pictures_row(eye)
    assert row == {"psnr_attacked_db": 30.5, "psnr_purified_db": 30.5, "psnr_regenerated_db": 22.5,
                   "closer_purified": 0.5, "closer_regenerated": 0.0, "largest_counter_change_255": 12.0}


def test_a_generator_started_from_another_defense_draws_what_that_defense_drew(tmp_path):
    """train/gan.py start_from: the generator becomes that defense's detail-path ISM encoder + generator, and
    G(its own code of x) is what that defense's generator drew from its ISM's code; a source without a detail path
    is refused."""
    from types import SimpleNamespace

    from ism import Generator
    from train.gan import start_generator

    src = ISMNetwork(ISMConfig(latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8], detail_channels=4))
    gen = Generator(src.generator_config())
    torch.nn.init.normal_(gen.fc[0].weight)              # a generator of its own, not the ISM's decoder
    src.save_pretrained(tmp_path / "src/ism")
    gen.save_pretrained(tmp_path / "src/generator")
    run = SimpleNamespace(device="cpu")
    G = start_generator(run, None, str(tmp_path / "src")).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(G(G.encode(x)), gen.eval()(src.encode(x)), atol=1e-6)
    plain = ISMNetwork(ISMConfig(latent_dim=16, enc_widths=[8, 8, 8, 8], dec_widths=[8, 8, 8, 8]))
    plain.save_pretrained(tmp_path / "plain/ism")
    Generator(plain.generator_config()).save_pretrained(tmp_path / "plain/generator")
    with pytest.raises(ValueError, match="detail-path"):
        start_generator(run, None, str(tmp_path / "plain"))
