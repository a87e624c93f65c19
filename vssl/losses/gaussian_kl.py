"""Closed-form KL divergence between two diagonal Gaussians."""

from __future__ import annotations

from torch import Tensor

from vssl.losses._precision import float32
from vssl.losses._reduce import Reduction, over_coordinates


@float32
def gaussian_kl(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, reduction: Reduction = "sum"
) -> Tensor:
    """``KL(N(mu_q, diag e^{logvar_q}) || N(mu_p, diag e^{logvar_p}))`` per sample, in nats.

    ``KL = R_j 0.5 [ logvar_p,j - logvar_q,j + (sigma_q,j^2 + (mu_q,j - mu_p,j)^2)
    / sigma_p,j^2 - 1 ]`` with ``R`` the sum over the d coordinates (``reduction="sum"``, the
    KL itself) or their mean (``"mean"``, the KL per coordinate). Inputs (B, d) (or
    broadcastable); returns (B,).
    """
    var_ratio = (logvar_q - logvar_p).exp()
    mean_term = (mu_q - mu_p).pow(2) * (-logvar_p).exp()
    return over_coordinates(0.5 * (logvar_p - logvar_q + var_ratio + mean_term - 1.0), reduction)
