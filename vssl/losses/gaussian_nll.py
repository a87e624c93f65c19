"""Negative log-likelihood of a sample under a diagonal Gaussian."""

from __future__ import annotations

import math

from torch import Tensor

from vssl.losses._precision import float32

_LOG_2PI = math.log(2.0 * math.pi)


@float32
def gaussian_nll(z: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """``-log N(z; mu_p, diag e^{logvar_p})`` per sample, in nats; inputs (B, d), returns (B,).

    ``nll = 0.5 * sum_j [ (z_j - mu_p,j)^2 / sigma_p,j^2 + log(2 pi sigma_p,j^2) ]``.
    """
    return 0.5 * ((z - mu_p).pow(2) * (-logvar_p).exp() + logvar_p + _LOG_2PI).sum(dim=-1)
