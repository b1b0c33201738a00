"""ISM network: the encoder of paper Table 2 and a decoder shaped like the GAN generator.

    Conv(64, 7x7, /2) LReLU(0.2) Conv(128, 3x3, /2) LReLU Conv(256, 3x3, /2) LReLU
    Conv(256, 5x5, /2) [LReLU, added: two linear maps in a row would collapse] FC(128)

Trained with paper Eq. 3 (map an attacked x' back to its clean x) on clean and attacked images;
``code_l1`` adds the "instance sparsity" penalty on the 128-d code during training.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .gan import Generator, GeneratorConfig
from .hub import HubModule


@dataclass
class ISMConfig:
    image_size: int = 32
    channels: int = 3
    latent_dim: int = 128                                             # paper Table 2: FC(128)
    enc_widths: list = field(default_factory=lambda: [64, 128, 256, 256])  # paper Table 2
    dec_widths: list = field(default_factory=lambda: [256, 256, 128, 64])


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class ISMNetwork(HubModule):
    """x (N, C, H, W) in [0, 1] -> purified x_hat, same shape, in [0, 1]."""

    config_class = ISMConfig

    def __init__(self, config: ISMConfig | None = None):
        super().__init__()
        self.config = c = config or ISMConfig()
        self.encoder = Encoder(c)
        self.decoder = Generator(GeneratorConfig(c.latent_dim, c.image_size, c.channels, list(c.dec_widths)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def generator_config(self) -> GeneratorConfig:
        return self.decoder.config
