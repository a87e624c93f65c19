"""The interface every method implements, and the shared momentum (EMA teacher) machinery."""

from __future__ import annotations

from typing import ClassVar

import torch.nn as nn
from torch import Tensor

from vssl.models.ema import cosine_tau, ema_update


class Method(nn.Module):
    """A self-supervised method around a student ``backbone`` (B, C, H, W) -> (B, feature_dim).

    ``training_step(x1, x2)`` (also ``forward``, so a DDP-wrapped method can be called directly)
    returns a dict with ``"loss"`` (scalar, differentiable), ``"feats"`` ((2B, feature_dim)
    detached student backbone features of [x1; x2]), ``"z"`` ((2B, k) detached student
    embeddings) and detached scalar log terms. Only student parameters require gradients.

    Every other scalar of that dict is a loss term (a ``history.csv`` column after ``loss``)
    unless ``diagnostics`` lists it: log-only values that are not part of the loss (VSSL's
    variances). ``logvar_bounds`` is ``(logvar_min, logvar_max)`` for methods whose
    log-variances are bounded (the variance-collapse guard), None otherwise.
    """

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    diagnostics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(feature_dim)

    def forward(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        return self.training_step(x1, x2)

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def momentum_update(self, step: int, total_steps: int) -> float | None:
        """EMA update of the teacher after the optimiser step; None for methods without one."""
        return None

    def gaussian(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """(mu, logvar) of the method's posterior ``q(z | x)`` in eval mode (VSSL: the student's
        Gaussian); None for methods without one."""
        return None

    @property
    def logvar_bounds(self) -> tuple[float, float] | None:
        """``(logvar_min, logvar_max)`` of the method's log-variances; None without any."""
        return None


class MomentumMethod(Method):
    """A method with an EMA teacher: subclasses list (student, teacher) module pairs."""

    def __init__(
        self, backbone: nn.Module, feature_dim: int, tau_base: float = 0.99, tau_final: float = 1.0
    ) -> None:
        super().__init__(backbone, feature_dim)
        self.tau_base = float(tau_base)
        self.tau_final = float(tau_final)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    def momentum_update(self, step: int, total_steps: int) -> float:
        """``tau = cosine_tau(step, total_steps, tau_base, tau_final)``, then for every pair
        ``theta_teacher <- tau * theta_teacher + (1 - tau) * theta_student``; returns tau.
        Call on the unwrapped module (``accelerator.unwrap_model(model)``)."""
        tau = cosine_tau(step, total_steps, self.tau_base, self.tau_final)
        for student, teacher in self.momentum_pairs():
            ema_update(teacher, student, tau)
        return tau
