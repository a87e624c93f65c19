"""MoCo v3 (Chen et al., 2021), ResNet variant as in solo-learn."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from vssl.losses import infonce
from vssl.methods.base import MomentumMethod
from vssl.models.ema import make_teacher
from vssl.models.heads import MLP


class MoCoV3(MomentumMethod):
    """``loss = infonce(q1, k2) + infonce(q2, k1)`` (each scaled by ``2 * temperature``).

    Projector: Linear(no bias)-BN-ReLU-Linear(no bias)-BN(affine=False); predictor:
    Linear-BN-ReLU-Linear, no biases, no last BN (solo-learn's ResNet layout). Queries
    ``q = predictor(projector(backbone(x)))``; keys from the EMA teacher's backbone + projector.
    """

    name = "mocov3"

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        temperature: float = 0.2,
        tau_base: float = 0.99,
        tau_final: float = 1.0,
    ) -> None:
        super().__init__(backbone, feature_dim, tau_base, tau_final)
        self.temperature = float(temperature)
        self.projector = MLP(
            feature_dim, proj_hidden_dim, proj_output_dim, bias=False, last_bn=True
        )
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim, bias=False)
        self.teacher_backbone = make_teacher(self.backbone)
        self.teacher_projector = make_teacher(self.projector)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.teacher_backbone), (self.projector, self.teacher_projector)]

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        q1, q2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            k1 = self.teacher_projector(self.teacher_backbone(x1))
            k2 = self.teacher_projector(self.teacher_backbone(x2))
        loss = infonce(q1, k2, self.temperature) + infonce(q2, k1, self.temperature)
        return {
            "loss": loss,
            "feats": torch.cat([f1, f2]).detach(),
            "z": torch.cat([z1, z2]).detach(),
        }
