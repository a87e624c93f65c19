"""SimCLR (Chen et al., 2020): 2-layer projector and NT-Xent, solo-learn's CIFAR defaults."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from vssl.losses import ntxent
from vssl.methods.base import Method
from vssl.models.heads import MLP


class SimCLR(Method):
    """``loss = ntxent(projector(backbone(x1)), projector(backbone(x2)), temperature)``."""

    name = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
    ) -> None:
        super().__init__(backbone, feature_dim)
        self.temperature = float(temperature)
        self.projector = MLP(feature_dim, proj_hidden_dim, proj_output_dim)

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        return {
            "loss": ntxent(z1, z2, self.temperature),
            "feats": torch.cat([f1, f2]).detach(),
            "z": torch.cat([z1, z2]).detach(),
        }
