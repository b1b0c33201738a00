"""GAN: the generator (which is also the ISM decoder) and the discriminator.

Generator: z (latent_dim) -> FC -> (widths[0], s/16, s/16) -> 4 x [ConvTranspose 4x4/2] -> image
in [0, 1]. It mirrors the ISM encoder of paper Table 2, so ``ISM = encoder + generator`` and the ISM
code of an image is a natural starting latent for regeneration (restart 0 starts there). ``z_mean``/``z_std``
hold the distribution of ISM codes on clean training images (fitted when the GAN is trained); random
restarts draw from it.

With ``detail_channels > 0`` the latent is richer than the 128-d code: z = [code (latent_dim),
detail map (detail_channels x s/4 x s/4), flattened], and the detail map joins the decoder at
s/4 resolution (concatenated to its features). The ISM encoder provides both; the detail is the
spatial information a 128-d code cannot hold (paper Table 2 code alone caps CIFAR-10 at ~18 dB).
With ``enc_widths`` the generator carries its own encoder, so a defense whose ISM keeps Table 2's code (the
paper's recipe) can still regenerate with a detail-path generator.

Discriminator: a DCGAN-style critic; during GAN training it learns real = clean images and
fake = generated images *and* adversarial examples (paper Sec. III).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ism.hub import HubModule


@dataclass
class GeneratorConfig:
    latent_dim: int = 128          # paper Table 2: FC(128)
    image_size: int = 32
    channels: int = 3
    widths: list = field(default_factory=lambda: [256, 256, 128, 64])  # mirror of the Table 2 encoder
    detail_channels: int = 0       # 0: z is the code alone (Table 2); > 0: + a detail map at s/4
    enc_widths: list | None = None # None: regeneration starts from the ISM's code of its target; a list: the
                                   # generator has its own encoder (ISM Table 2 widths) and starts from its code
                                   # (a generator that can draw the data set beside an ISM whose code cannot)

    DETAIL_BLOCK = 2               # the detail map joins after this many up-sampling blocks (s/16 -> s/4)

    @property
    def detail_size(self) -> int:
        return self.image_size // 4

    @property
    def z_dim(self) -> int:
        """Length of the whole latent z: the code plus the flattened detail map."""
        return self.latent_dim + self.detail_channels * self.detail_size ** 2


class Generator(HubModule):
    """z (N, config.z_dim) -> images (N, C, H, W) in [0, 1]."""

    config_class = GeneratorConfig

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = c = config or GeneratorConfig()
        if c.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {c.image_size}")
        self.base = c.image_size // 16
        w = list(c.widths)
        self.fc = nn.Sequential(nn.Linear(c.latent_dim, w[0] * self.base ** 2), nn.BatchNorm1d(w[0] * self.base ** 2),
                                nn.ReLU(inplace=True))
        layers = []
        for i, (a, b) in enumerate(zip(w, w[1:])):
            if c.detail_channels and i == c.DETAIL_BLOCK:   # the features are at s/4 here: the detail map joins
                a += c.detail_channels
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(w[-1], c.channels, 4, 2, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.encoder = None
        if c.enc_widths is not None:
            from ism.models.ism_net import Encoder, ISMConfig  # ism_net builds its decoder from this module

            self.encoder = Encoder(ISMConfig(c.image_size, c.channels, c.latent_dim, list(c.enc_widths),
                                             detail_channels=c.detail_channels))
        self.register_buffer("z_mean", torch.zeros(c.z_dim))
        self.register_buffer("z_std", torch.ones(c.z_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config
        h = self.fc(z[:, :c.latent_dim]).view(len(z), -1, self.base, self.base)
        if not c.detail_channels:
            return self.net(h)
        detail = z[:, c.latent_dim:].reshape(len(z), c.detail_channels, c.detail_size, c.detail_size)
        j = 3 * c.DETAIL_BLOCK                    # each block is ConvTranspose, BatchNorm, ReLU
        return self.net[j:](torch.cat([self.net[:j](h), detail.to(h.dtype)], 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, z_dim): the generator's own code of images x (only with ``config.enc_widths``)."""
        if self.encoder is None:
            raise ValueError("this generator has no encoder: its latent is the ISM's code (ISMNetwork.encode)")
        return self.encoder(x)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(n, self.config.z_dim, generator=generator, device=self.z_mean.device
                          if generator is None else generator.device)
        return self.z_mean + self.z_std * eps.to(self.z_mean.device)


@dataclass
class DiscriminatorConfig:
    image_size: int = 32
    channels: int = 3
    widths: list = field(default_factory=lambda: [64, 128, 256])


class Discriminator(HubModule):
    """images (N, C, H, W) in [0, 1] -> (N,) logit that the image is a clean real one."""

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = c = config or DiscriminatorConfig()
        layers, ch = [], c.channels
        for w in c.widths:
            layers += [nn.Conv2d(ch, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch = w
        self.net = nn.Sequential(*layers, nn.Flatten(),
                                 nn.Linear(ch * (c.image_size // 2 ** len(c.widths)) ** 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).squeeze(1)
