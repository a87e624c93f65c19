"""von Mises-Fisher-style (cosine) negative log-likelihood."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vssl.losses._precision import float32


@float32
def cosine_nll(z: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """Cosine likelihood term per sample; inputs (B, d), returns (B,).

    ``nll_cos = (1 - cos(z, mu_p)) / v`` with ``v = mean_j sigma_p,j^2``: a von Mises-Fisher
    log-density with mean direction ``mu_p / |mu_p|`` and concentration ``kappa = 1 / v``, up to
    its normaliser (which depends on the prior only, so it carries no gradient to the sample).
    It ignores the norms of ``z`` and ``mu_p``; ``0 <= nll_cos <= 2 / v``.
    """
    v = logvar_p.exp().mean(dim=-1)
    return (1.0 - F.cosine_similarity(z, mu_p, dim=-1)) / v
