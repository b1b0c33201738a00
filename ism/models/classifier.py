"""Target classifier: the layer sequence of paper Table 1 (``arch="table1"``), or a compute-efficient
residual-free net shaped like airbench94 (``arch="airbench"``), which the shipped CIFAR-10 defense uses.

Table 1 (``arch="table1"``):

    Conv(128,3x3) ReLU Conv(256,3x3) ReLU MaxPool(2) BN Conv(128,3x3) ReLU Conv(64,3x3) ReLU
    Dense(1024) ReLU Dense(classes)  [softmax lives in the loss; the module returns logits]

Small fixes, all documented: 'same' padding on every conv; a second MaxPool(2) before the dense
layer (without it Dense(1024) alone has 16.8M weights on 32x32 input); normalization by the data
set's mean/std inside the module so the public input is [0, 1] NCHW. The widths are a config
value: the paper's (128, 256, 128, 64) + 1024 is the default, the shipped CIFAR-10 weights use a
narrower width because they were trained on a 2-core CPU (see weights/cifar10-paper/).

airbench (``arch="airbench"``, Jordan 2024, KellerJordan/cifar10-airbench ``legacy/airbench94.py``):

    Conv(c0, 3x3) BN GELU   then 3 x [Conv(w, 3x3) MaxPool(2) BN GELU Conv(w, 3x3) BN GELU]
    GlobalMaxPool Linear(classes, no bias) x 1/9

``channels`` = [c0, w1, w2, w3]. Differences from airbench94, on purpose: a trainable 3x3 stem
instead of the frozen 2x2 patch-whitening layer (its initialisation needs the training data and
it maps an L-inf ball to a stretched one), and a global max-pool so any input size works. Why
this net for the hardened defense: on the 2-core CPU it trains an epoch of FGSM adversarial
training in about a third of a PreActResNet-18's time, which buys the epochs robustness needs.

preact18 (``arch="preact18"``, He et al. 2016; the network of Wong et al. 2020's fast adversarial
training and RobustBench's Wong2020Fast): a 3x3 stem, four stages of two pre-activation basic blocks
of widths ``channels`` (its own: 64, 128, 256, 512; stride 2 from the second stage), BN ReLU,
global average pool, Linear (the layers of fast_adversarial's ``PreActResNet18``). Not shipped: it is
README's "next lever" for CIFAR-10's robustness, at 2.1x the shipped airbench net's CPU time a step, here so
that lever can be measured (``train classifier --set arch=preact18 --set 'channels=[64,128,256,512]'``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ism.hub import HubModule


@dataclass
class ClassifierConfig:
    num_classes: int = 10
    image_size: int = 32
    in_channels: int = 3
    channels: list = field(default_factory=lambda: [128, 256, 128, 64])  # paper Table 1
    hidden: int = 1024  # paper Table 1: Dense(1024)
    mean: list = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])  # CIFAR-10 train statistics
    std: list = field(default_factory=lambda: [0.2470, 0.2435, 0.2616])
    class_names: list = field(default_factory=list)
    arch: str = "table1"  # "table1" (paper) | "airbench" (the shipped CIFAR-10 defense) | "preact18"


ARCHS = ("table1", "airbench", "preact18")


class ConvGroup(nn.Sequential):
    """airbench94's block: conv, pool, BN, GELU, conv, BN, GELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                         nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.GELU())


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN ReLU conv BN ReLU conv, plus the (1x1 conv) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out
                         else None)

    def forward(self, x):
        skip = self.shortcut(x) if self.shortcut is not None else x   # as fast_adversarial's PreActBlock
        out = self.conv1(torch.relu(self.bn1(x)))
        return self.conv2(torch.relu(self.bn2(out))) + skip


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Classifier(HubModule):
    """Table 1, airbench or preact18 classifier. Input (N, C, H, W) floats in [0, 1]; output (N, num_classes) logits."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = c = config or ClassifierConfig()
        if c.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {c.arch!r}")
        c1, c2, c3, c4 = c.channels
        self.register_buffer("mean", torch.tensor(c.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(c.std).view(1, -1, 1, 1), persistent=False)
        if c.arch == "airbench":
            self.features = nn.Sequential(
                nn.Conv2d(c.in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.GELU(),
                ConvGroup(c1, c2), ConvGroup(c2, c3), ConvGroup(c3, c4))
            self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c4, c.num_classes, bias=False),
                                      Scale(1 / 9))   # airbench94's output scaling
            return
        if c.arch == "preact18":
            blocks, c_in = [nn.Conv2d(c.in_channels, c1, 3, padding=1, bias=False)], c1
            for i, w in enumerate(c.channels):
                blocks += [PreActBlock(c_in, w, 1 if i == 0 else 2), PreActBlock(w, w, 1)]
                c_in = w
            self.features = nn.Sequential(*blocks, nn.BatchNorm2d(c4), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c4, c.num_classes))
            return
        self.features = nn.Sequential(
            nn.Conv2d(c.in_channels, c1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # fix: keeps Dense(hidden) small
        )
        flat = c4 * (c.image_size // 4) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, c.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(c.hidden, c.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std))
