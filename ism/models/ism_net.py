"""ISM network: the encoder of paper Table 2 and a decoder shaped like the GAN generator.

    Conv(64, 7x7, /2) LReLU(0.2) Conv(128, 3x3, /2) LReLU Conv(256, 3x3, /2) LReLU
    Conv(256, 5x5, /2) [LReLU, added: two linear maps in a row would collapse] FC(128)

Trained with paper Eq. 3 (map an attacked x' back to its clean x) on clean and attacked images;
``code_l1`` adds the "instance sparsity" penalty on the 128-d code during training.

``detail_channels > 0`` (the shipped CIFAR-10 ISM) adds a detail path, as MagNet's CIFAR-10
reformer keeps spatial resolution: a 1x1 conv reads the encoder's s/4 feature map (after its
second conv) into ``detail_channels`` maps that join the decoder at s/4. The 128-d code of Table 2
stays the instance code; ``encode`` returns [code, detail flattened], the latent regeneration starts from.
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


class ISMNetwork(HubModule):
    """x (N, C, H, W) in [0, 1] -> purified x_hat, same shape, in [0, 1]."""

    config_class = ISMConfig

    def __init__(self, config: ISMConfig | None = None):
        super().__init__()
        self.config = c = config or ISMConfig()
        self.encoder = Encoder(c)
        self.decoder = Generator(GeneratorConfig(c.latent_dim, c.image_size, c.channels, list(c.dec_widths),
                                                 c.detail_channels))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def generator_config(self) -> GeneratorConfig:
        return self.decoder.config
