"""BYOL (Grill et al., 2020), solo-learn's layout: 2-layer projector and predictor, EMA teacher."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from vssl.losses import negative_cosine
from vssl.methods.base import MomentumMethod
from vssl.models.ema import make_teacher
from vssl.models.heads import MLP


class BYOL(MomentumMethod):
    """``loss = ncos(p(x1), z_t(x2)) + ncos(p(x2), z_t(x1))``, ``ncos(p, z) = 2 - 2 cos(p, z)``.

    Student: backbone -> projector -> predictor (p); teacher: EMA of backbone -> projector (z_t).
    """

    name = "byol"

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        tau_base: float = 0.99,
        tau_final: float = 1.0,
    ) -> None:
        super().__init__(backbone, feature_dim, tau_base, tau_final)
        self.projector = MLP(feature_dim, proj_hidden_dim, proj_output_dim)
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)
        self.teacher_backbone = make_teacher(self.backbone)
        self.teacher_projector = make_teacher(self.projector)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.teacher_backbone), (self.projector, self.teacher_projector)]

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.teacher_projector(self.teacher_backbone(x1))
            t2 = self.teacher_projector(self.teacher_backbone(x2))
        loss = negative_cosine(p1, t2) + negative_cosine(p2, t1)
        return {
            "loss": loss,
            "feats": torch.cat([f1, f2]).detach(),
            "z": torch.cat([z1, z2]).detach(),
        }
