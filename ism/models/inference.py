"""``InferenceOnly``: the one place that keeps an inference pipeline in eval mode."""
from __future__ import annotations

from torch import nn


class InferenceOnly(nn.Module):
    """A module that only ever runs inference (the defense, a baseline, an attack's target): it
    stays in eval mode whatever a caller asks, including an attack library restoring the 'training
    mode' it found, so BatchNorm statistics of the shared weights never drift. Subclasses call
    ``self.eval()`` at the end of ``__init__``, once their submodules exist."""

    def train(self, mode: bool = True) -> "InferenceOnly":
        return super().train(False)
