"""ISM network: the encoder of paper Table 2 and a decoder shaped like the GAN generator.

    Conv(64, 7x7, /2) LReLU(0.2) Conv(128, 3x3, /2) LReLU Conv(256, 3x3, /2) LReLU
    Conv(256, 5x5, /2) [LReLU, added: two linear maps in a row would collapse] FC(128)

Trained with paper Eq. 3 (map an attacked x' back to its clean x) on clean and attacked images;
``code_l1`` adds the "instance sparsity" penalty on the 128-d code during training.

``detail_channels > 0`` (the shipped CIFAR-10 ISM) adds a detail path, as MagNet's CIFAR-10
reformer keeps spatial resolution: a 1x1 conv reads the encoder's s/4 feature map (after its
second conv) into ``detail_channels`` maps that join the decoder at s/4. The 128-d code of Table 2
stays the instance code; ``encode`` returns [code, detail flattened], the latent regeneration starts from.

``refine_width > 0`` (the paper recipe's CIFAR-10 ISM, issue "caught and undone") keeps Table 2's auto-encoder
as it is and adds a refiner: a full-resolution residual U-Net that reads x and the auto-encoder's reconstruction
and returns x + r. Trained with HGD's classifier-guided loss (Liao et al. 2018) on a pool of gray-box attacks,
it learns to leave clean images alone and take the perturbation out of attacked ones, which a faithful copy
(the detail path) cannot learn: it copies the perturbation with the image (results/caught-and-undone-probes.md).
The 128-d code, the regeneration's starting latent, is the auto-encoder's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ism.hub import HubModule
from ism.models.gan import Generator, GeneratorConfig


@dataclass
class ISMConfig:
    image_size: int = 32
    channels: int = 3
    latent_dim: int = 128                                             # paper Table 2: FC(128)
    enc_widths: list = field(default_factory=lambda: [64, 128, 256, 256])  # paper Table 2
    dec_widths: list = field(default_factory=lambda: [256, 256, 128, 64])
    detail_channels: int = 0      # 0: Table 2's auto-encoder; > 0: + a detail map at s/4 (see above)
    refine_width: int = 0         # 0: no refiner; > 0: + a residual U-Net of this width (see above)
    refine_bound: float = 0.0     # > 0: the refiner's change to its input is at most this per pixel, b * tanh(r / b)
                                  # (issue "the pictures tell the truth": a counter-change as faint as an attack)


class Encoder(nn.Module):
    def __init__(self, c: ISMConfig):
        super().__init__()
        w = c.enc_widths
        kernels = (7, 3, 3, 5)
        layers, ch = [], c.channels
        for width, k in zip(w, kernels):
            layers += [nn.Conv2d(ch, width, k, 2, k // 2), nn.LeakyReLU(0.2, inplace=True)]
            ch = width
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * (c.image_size // 16) ** 2, c.latent_dim))
        self.detail = nn.Conv2d(w[1], c.detail_channels, 1) if c.detail_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, z_dim): the code, then the flattened detail map (if any)."""
        x = x * 2 - 1
        if self.detail is None:
            return self.net(x)
        h = self.net[:4](x)                       # two (stride-2 conv, LeakyReLU) pairs: s/4
        return torch.cat([self.net[4:](h), self.detail(h).flatten(1).to(h.dtype)], 1)


def _conv(i: int, o: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class Refiner(nn.Module):
    """(x, reconstruction) -> x + r, clamped to [0, 1]: a U-Net at s, s/2 and s/4 of widths w, 2w, 4w.
    Its last conv starts at zero, so an untrained refiner passes x through unchanged. With ``bound`` b > 0 the
    change is b * tanh(r / b): never more than b on any pixel (an unbounded refiner answered an 8/255 attack with
    a counter-pattern of RMS 16/255, a picture further from the original than the attacked one)."""

    def __init__(self, channels: int, w: int, bound: float = 0.0):
        super().__init__()
        self.bound = float(bound)
        self.e1 = nn.Sequential(_conv(2 * channels, w), _conv(w, w))
        self.e2 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.e3 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w), _conv(4 * w, 4 * w))
        self.up = nn.Upsample(scale_factor=2)
        self.d2 = nn.Sequential(_conv(6 * w, 2 * w), _conv(2 * w, 2 * w))
        self.d1 = nn.Sequential(_conv(3 * w, w), _conv(w, w))
        self.out = nn.Conv2d(w, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        h1 = self.e1(torch.cat([x, reconstruction.to(x.dtype)], 1) * 2 - 1)
        h2 = self.e2(h1)
        h3 = self.e3(h2)
        d2 = self.d2(torch.cat([self.up(h3), h2], 1))
        d1 = self.d1(torch.cat([self.up(d2), h1], 1))
        r = self.out(d1).to(x.dtype)
        if self.bound:
            r = self.bound * torch.tanh(r / self.bound)
        return (x + r).clamp(0, 1)


class ISMNetwork(HubModule):
    """x (N, C, H, W) in [0, 1] -> purified x_hat, same shape, in [0, 1]."""

    config_class = ISMConfig

    def __init__(self, config: ISMConfig | None = None):
        super().__init__()
        self.config = c = config or ISMConfig()
        self.encoder = Encoder(c)
        self.decoder = Generator(GeneratorConfig(c.latent_dim, c.image_size, c.channels, list(c.dec_widths),
                                                 c.detail_channels))
        self.refiner = Refiner(c.channels, c.refine_width, c.refine_bound) if c.refine_width else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The auto-encoder's output, decoder(encoder(x)): the ISM's output when it has no refiner."""
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rec = self.reconstruct(x)
        return rec if self.refiner is None else self.refiner(x, rec)

    def generator_config(self) -> GeneratorConfig:
        return self.decoder.config
