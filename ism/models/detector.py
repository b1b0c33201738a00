"""Perturbation detector: classifies the ISM residual r = x - ISM(x) as clean or attacked and
estimates the attack strength (paper: "a perturbation classifier individually trained to classify
the transform of the input-output difference ... to examine the attacking level").

Two heads on one small CNN: an 'attacked' logit and logits over ``eps_levels`` (level 0 = clean).
``threshold`` is calibrated after training on held-out clean images (a target false-positive
rate) and saved in config.json with the weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ism.hub import HubModule


@dataclass
class DetectorConfig:
    image_size: int = 32
    channels: int = 3
    widths: list = field(default_factory=lambda: [32, 64, 128])
    eps_levels: list = field(default_factory=lambda: [0.0, 2 / 255, 8 / 255, 0.1, 0.2, 0.3, 0.4])
    threshold: float = 0.5          # P(attacked) above which an input counts as attacked; calibrated
    target_fpr: float = 0.01        # the clean false-positive rate the threshold was calibrated for


class PerturbationDetector(HubModule):
    """residual (N, C, H, W) in [-1, 1] -> (attacked logit (N,), eps-level logits (N, K))."""

    config_class = DetectorConfig

    def __init__(self, config: DetectorConfig | None = None):
        super().__init__()
        self.config = c = config or DetectorConfig()
        layers, ch = [], c.channels * 2  # residual and its absolute value: sign noise shows in both
        for i, w in enumerate(c.widths):
            layers += [nn.Conv2d(ch, w, 3, 1 if i == 0 else 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            ch = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.attacked = nn.Linear(ch, 1)
        self.level = nn.Linear(ch, len(c.eps_levels))

    def forward(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(torch.cat([residual * 4, residual.abs() * 4], 1))
        return self.attacked(h).squeeze(1), self.level(h)

    def strength(self, level_logits: torch.Tensor) -> torch.Tensor:
        """Expected epsilon under the predicted level distribution, (N,)."""
        levels = torch.tensor(self.config.eps_levels, device=level_logits.device, dtype=torch.float32)
        return level_logits.float().softmax(1) @ levels
