"""Projector / predictor MLPs and the Gaussian (mean, log-variance) head."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class MLP(nn.Sequential):
    """``num_layers`` linear layers with BatchNorm1d + ReLU between them (solo-learn's layout).

    ``num_layers=2``: Linear(in, hidden) - BN - ReLU - Linear(hidden, out) (BYOL's projector and
    predictor, SimCLR's projector). ``num_layers=3``: Barlow Twins' projector. ``bias=False`` and
    ``last_bn=True`` (a final BatchNorm1d without affine parameters) give MoCo v3's projector.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        bias: bool = True,
        last_bn: bool = False,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got num_layers={num_layers}")
        layers: list[nn.Module] = []
        for i in range(num_layers):
            d_in = in_dim if i == 0 else hidden_dim
            d_out = out_dim if i == num_layers - 1 else hidden_dim
            layers.append(nn.Linear(d_in, d_out, bias=bias))
            if i < num_layers - 1:
                layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
            elif last_bn:
                layers.append(nn.BatchNorm1d(d_out, affine=False))
        super().__init__(*layers)


class GaussianHead(nn.Module):
    """Diagonal Gaussian head: ``h -> (mu, logvar)``, each (B, latent_dim).

    ``mu = W_mu h + b_mu`` and a bounded log-variance
    ``logvar = logvar_min + (logvar_max - logvar_min) * sigmoid(W_v h + b_v)``,
    so ``sigma^2`` lies in ``[exp(logvar_min), exp(logvar_max)]`` (defaults ``[3.4e-4, 54.6]``):
    ``1 / sigma^2`` in the likelihood and KL can neither overflow nor divide by zero, and the
    sigmoid keeps a gradient everywhere (a hard clamp would not). With the default init the
    pre-activation is near 0, so training starts near the middle of the range.

    ``var_in_dim`` (default ``in_dim``): the width of the variance's own input, when the
    log-variance reads a different tensor than the mean (``forward(h, v)``).
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        logvar_min: float = -8.0,
        logvar_max: float = 4.0,
        var_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not logvar_min < logvar_max:
            raise ValueError(
                f"GaussianHead needs logvar_min < logvar_max, got {logvar_min} >= {logvar_max}"
            )
        self.logvar_min = float(logvar_min)
        self.logvar_max = float(logvar_max)
        self.mu = nn.Linear(in_dim, latent_dim)
        self.logvar = nn.Linear(in_dim if var_in_dim is None else var_in_dim, latent_dim)

    def forward(self, h: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(mu(h), logvar(v))``; ``v`` defaults to ``h``."""
        raw = self.logvar(h if v is None else v)
        logvar = self.logvar_min + (self.logvar_max - self.logvar_min) * torch.sigmoid(raw)
        return self.mu(h), logvar
