"""The untrained backbone: the floor every self-supervised method must beat."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from vssl.methods.base import Method


class RandomInit(Method):
    """No loss and nothing to train (``trainable = False``): the engine saves the initial weights
    and evaluation uses the randomly initialised ``backbone``."""

    name = "random"
    trainable = False

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__(backbone, feature_dim)
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        raise RuntimeError(
            "method 'random' has no loss and is not trained (trainable=False); "
            "use its initial backbone directly"
        )
