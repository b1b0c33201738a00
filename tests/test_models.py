"""Every component: output shapes and value ranges (tiny configs), and the paper-size layers."""
import torch

from ism import Classifier, ClassifierConfig, ISMConfig, ISMNetwork
from conftest import tiny_parts


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
