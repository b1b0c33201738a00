"""Baseline defenses the paper compares against (Table 3), trained here on the same data and
protecting the same classifier: MagNet and DDSA.

MagNet (Meng & Chen 2017), CIFAR-10 set-up of the original code:
    auto-encoder  Conv(3, 3x3) sigmoid -> Conv(3, 3x3) sigmoid -> Conv(C, 3x3) sigmoid,
                  trained on clean images with Gaussian noise (volume 0.025), MSE;
    detectors     reconstruction error |x - AE(x)|_1 (mean per image), and Jensen-Shannon
                  divergence between softmax(f(x)/T) and softmax(f(AE(x))/T) for T = 10 and 40;
                  each threshold set on held-out clean images for a drop rate (0.005 each);
    reformer      the classifier reads AE(x).
    An input any detector flags is rejected. MagNet's paper counts a rejected adversarial example
    as defended; ``MagNet.predict`` returns the reformer's logits and ``MagNet.rejected`` the flags.

DDSA (Bakhti et al. 2019): a deep denoising sparse auto-encoder trained on clean, noisy and
adversarial images to output the clean image, with a KL sparsity penalty on its sigmoid code
(target activation rho); the classifier reads DDSA(x).

Both take (N, C, H, W) floats in [0, 1] and return images of the same shape and range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ism.hub import HubModule
from ism.models.inference import InferenceOnly


@dataclass
class MagNetConfig:
    channels: int = 3
    structure: list = field(default_factory=lambda: [3])  # hidden conv widths; [3] is MagNet's CIFAR AE
    noise: float = 0.025            # training noise volume (MagNet's v_noise)
    temperatures: list = field(default_factory=lambda: [10.0, 40.0])  # JSD detectors
    drop_rate: float = 0.005        # clean false-positive rate per detector (MagNet: 0.005 on CIFAR)
    recon_threshold: float = 1.0    # calibrated after training
    jsd_thresholds: list = field(default_factory=lambda: [1.0, 1.0])   # calibrated, one per temperature


class MagNetAutoencoder(HubModule):
    """MagNet's auto-encoder with its calibrated detector thresholds in the config."""

    config_class = MagNetConfig

    def __init__(self, config: MagNetConfig | None = None):
        super().__init__()
        self.config = c = config or MagNetConfig()
        layers, ch = [], c.channels
        for w in c.structure:
            layers += [nn.Conv2d(ch, w, 3, padding=1), nn.Sigmoid()]
            ch = w
        for w in reversed(c.structure):
            layers += [nn.Conv2d(ch, w, 3, padding=1), nn.Sigmoid()]
            ch = w
        layers += [nn.Conv2d(ch, c.channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def jsd(p_logits: torch.Tensor, q_logits: torch.Tensor, T: float) -> torch.Tensor:
    """Jensen-Shannon divergence between softmax(p/T) and softmax(q/T), (N,)."""
    p, q = F.softmax(p_logits.float() / T, 1), F.softmax(q_logits.float() / T, 1)
    m = (p + q) / 2
    kl = lambda a, b: (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(1)  # noqa: E731
    return ((kl(p, m) + kl(q, m)) / 2).clamp_min(0)   # rounding can dip below 0


class Purified(InferenceOnly):
    """classifier(purifier(x)): a purifier-based defense as one logits module (DDSA)."""

    def __init__(self, purifier: nn.Module, classifier: nn.Module):
        super().__init__()
        self.purifier, self.classifier = purifier, classifier
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purifier(x))

    predict = forward


class MagNet(Purified):
    """MagNet around ``classifier``: ``predict`` = classifier(AE(x)); ``scores``/``rejected``."""

    def __init__(self, ae: MagNetAutoencoder, classifier: nn.Module):
        super().__init__(ae, classifier)

    @property
    def ae(self) -> MagNetAutoencoder:
        return self.purifier

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reformer logits classifier(AE(x)), detector scores (N, 1 + len(temperatures)):
        reconstruction error, then JSD per temperature), from one pass of the auto-encoder."""
        r = self.ae(x)
        lx, lr = self.classifier(x), self.classifier(r)
        cols = [(x - r).abs().flatten(1).mean(1)] + [jsd(lx, lr, T) for T in self.ae.config.temperatures]
        return lr, torch.stack([c.float() for c in cols], 1)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)[1]

    def rejected(self, x: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        s = self.scores(x) if scores is None else scores
        c = self.ae.config
        th = torch.tensor([c.recon_threshold, *c.jsd_thresholds], device=s.device)
        return (s > th).any(1)


@dataclass
class DDSAConfig:
    channels: int = 3
    widths: list = field(default_factory=lambda: [32, 64])  # encoder convs (the 2nd halves the size)
    code: int = 64                  # sigmoid code channels at H/2 x W/2
    rho: float = 0.05               # target mean activation of each code unit (sparsity)
    sparsity_weight: float = 0.01   # beta: weight of KL(rho || mean activation), averaged over channels
    noise: float = 0.05             # std of the Gaussian noise added to some training inputs


class DDSA(HubModule):
    """Deep denoising sparse auto-encoder: x (attacked or not) -> clean estimate, same shape."""

    config_class = DDSAConfig

    def __init__(self, config: DDSAConfig | None = None):
        super().__init__()
        self.config = c = config or DDSAConfig()
        w1, w2 = c.widths
        self.encoder = nn.Sequential(
            nn.Conv2d(c.channels, w1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w2, c.code, 3, padding=1), nn.Sigmoid())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c.code, w2, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w2, w1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w1, c.channels, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def sparsity(self, code: torch.Tensor) -> torch.Tensor:
        """KL(rho || rho_hat) averaged over code channels, rho_hat = mean activation per channel."""
        rho, rh = self.config.rho, code.float().mean((0, 2, 3)).clamp(1e-6, 1 - 1e-6)
        return (rho * (rho / rh).log() + (1 - rho) * ((1 - rho) / (1 - rh)).log()).mean()


def load_baselines(root: str | Path, device="cpu") -> dict:
    """The raw-image classifier (``base``) of the defense in ``root`` and, where their weights exist,
    MagNet and DDSA around it (else None)."""
    from ism.folders import base_classifier_folder
    from ism.models.classifier import Classifier

    root = Path(root)
    base = Classifier.from_pretrained(str(base_classifier_folder(root))).to(device).eval()
    out = {"base": base, "magnet": None, "ddsa": None}
    if (root / "baselines/magnet/model.safetensors").exists():
        out["magnet"] = MagNet(MagNetAutoencoder.from_pretrained(str(root / "baselines/magnet")).to(device), base)
    if (root / "baselines/ddsa/model.safetensors").exists():
        out["ddsa"] = Purified(DDSA.from_pretrained(str(root / "baselines/ddsa")).to(device), base)
    return out
