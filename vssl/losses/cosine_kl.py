"""KL between diagonal Gaussians with its mean term replaced by a cosine (direction) term."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vssl.losses._precision import float32
from vssl.losses._reduce import Reduction, over_coordinates
from vssl.losses.gaussian_kl import gaussian_kl


@float32
def cosine_kl(
    mu_q: Tensor,
    logvar_q: Tensor,
    mu_p: Tensor,
    logvar_p: Tensor,
    reduction: Reduction = "sum",
    isotropic: bool = True,
) -> Tensor:
    """Cosine KL per sample; inputs (B, d), returns (B,).

    The Gaussian KL's mean term is replaced by ``(1 - cos(mu_q, mu_p)) / v`` with
    ``v = mean_j sigma_p,j^2`` (the prior's isotropic variance), and the variance terms are
    kept::

        KL_cos = (1 - cos(mu_q, mu_p)) / v
                 + R_j 0.5 [ log(sigma_p,j^2 / sigma_q,j^2) + sigma_q,j^2 / sigma_p,j^2 - 1 ]

    ``R`` is the sum over the d coordinates (``reduction="sum"``: the KL between Gaussians on
    the directions on the unit sphere, with the prior's mean-term variance isotropic) or their
    mean (``"mean"``: the same KL on the sphere of radius sqrt(d), per coordinate; see
    :func:`vssl.losses.cosine_nll`). The term is invariant to rescaling either mean and is 0
    for aligned means with equal variances. A zero prior mean (the ``standard_normal`` prior)
    has no direction: ``cos`` is then 0 (``F.cosine_similarity`` with its ``eps``), so the mean
    term is the constant ``1 / v`` and carries no gradient.

    ``isotropic=False``: the mean term with the prior's per-coordinate variances, i.e. the
    Gaussian KL of the directions, ``gaussian_kl(r mu_q/|mu_q|, logvar_q, r mu_p/|mu_p|,
    logvar_p)`` (``r = 1`` for ``"sum"``, ``sqrt(d)`` for ``"mean"``).
    """
    if not isotropic:
        r = mu_q.shape[-1] ** 0.5 if reduction == "mean" else 1.0
        q, p = F.normalize(mu_q, dim=-1) * r, F.normalize(mu_p, dim=-1) * r
        return gaussian_kl(q, logvar_q, p, logvar_p, reduction=reduction)
    v = logvar_p.exp().mean(dim=-1)
    mean_term = (1.0 - F.cosine_similarity(mu_q, mu_p, dim=-1)) / v
    var_terms = 0.5 * (logvar_p - logvar_q + (logvar_q - logvar_p).exp() - 1.0)
    return mean_term + over_coordinates(var_terms, reduction)
