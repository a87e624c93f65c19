"""Barlow Twins (Zbontar et al., 2021): 3-layer projector, solo-learn's CIFAR defaults."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from vssl.losses import barlow_twins_loss
from vssl.methods.base import Method
from vssl.models.heads import MLP


class BarlowTwins(Method):
    """``loss = scale * [sum_i (1 - C_ii)^2 + lamb * sum_{i != j} C_ij^2]`` on the projections.

    Projector: Linear-BN-ReLU-Linear-BN-ReLU-Linear (solo-learn).
    """

    name = "barlow_twins"

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        lamb: float = 0.0051,
        scale_loss: float = 0.1,
    ) -> None:
        super().__init__(backbone, feature_dim)
        self.lamb, self.scale_loss = float(lamb), float(scale_loss)
        self.projector = MLP(feature_dim, proj_hidden_dim, proj_output_dim, num_layers=3)

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        return {
            "loss": barlow_twins_loss(z1, z2, self.lamb, self.scale_loss),
            "feats": torch.cat([f1, f2]).detach(),
            "z": torch.cat([z1, z2]).detach(),
        }
