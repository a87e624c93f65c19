"""Negative log-likelihood of a sample under a diagonal Gaussian."""

from __future__ import annotations

import math

from torch import Tensor

from vssl.losses._precision import float32
from vssl.losses._reduce import Reduction, over_coordinates

_LOG_2PI = math.log(2.0 * math.pi)


@float32
def gaussian_nll(x: Tensor, mu: Tensor, logvar: Tensor, reduction: Reduction = "sum") -> Tensor:
    """``-log N(x; mu, diag e^{logvar})`` per sample, in nats; inputs (B, d), returns (B,).

    ``nll = R_j 0.5 [ (x_j - mu_j)^2 / sigma_j^2 + log(2 pi sigma_j^2) ]``, ``R`` the sum over
    the d coordinates (``reduction="sum"``) or their mean (``"mean"``, nats per coordinate).
    Symmetric in ``x`` and ``mu``: VSSL passes the teacher's embedding as ``x`` and the
    student's sample as ``mu`` when the student's variance scales the likelihood.
    """
    terms = 0.5 * ((x - mu).pow(2) * (-logvar).exp() + logvar + _LOG_2PI)
    return over_coordinates(terms, reduction)
