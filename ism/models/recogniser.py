"""Data-set recogniser: which of the project's data sets a picture looks like (CIFAR-10's small photos of ten
kinds of things, or CelebA's aligned faces). The app uses it on an uploaded picture only, to say in one
sentence when the picture is outside the served defense's data set (a face on CIFAR-10, a cat on CelebA): the
classifier then still answers one of its own classes. It knows these two kinds of picture and nothing else; a
picture of a third kind is judged by which of the two it resembles (figures: its model card).

Input (N, C, H, W) floats in [0, 1] at any size (resized to ``image_size``); output (N, len(kinds)) logits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ism.hub import HubModule


@dataclass
class RecogniserConfig:
    kinds: list = field(default_factory=lambda: ["cifar10", "celeba"])   # data-set names, in logit order
    image_size: int = 32
    channels: int = 3
    widths: list = field(default_factory=lambda: [16, 32, 64])


class DataSetRecogniser(HubModule):
    config_class = RecogniserConfig

    def __init__(self, config: RecogniserConfig | None = None):
        super().__init__()
        self.config = c = config or RecogniserConfig()
        layers, ch = [], c.channels
        for i, w in enumerate(c.widths):
            layers += [nn.Conv2d(ch, w, 3, 1 if i == 0 else 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            ch = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, len(c.kinds)))

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        if x.shape[-2:] == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.resize(x) * 2 - 1)

    @torch.no_grad()
    def likeness(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """P(the picture is of data set ``kind``), (N,)."""
        return self(x).float().softmax(1)[:, self.config.kinds.index(kind)]
