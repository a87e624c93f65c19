"""Cosine (direction) negative log-likelihood: a Gaussian on the directions."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from vssl.losses._precision import float32
from vssl.losses._reduce import Reduction
from vssl.losses.gaussian_nll import gaussian_nll

_LOG_2PI = math.log(2.0 * math.pi)


@float32
def cosine_nll(
    x: Tensor, mu: Tensor, logvar: Tensor, reduction: Reduction = "sum", isotropic: bool = True
) -> Tensor:
    """Cosine likelihood term per sample; inputs (B, d), returns (B,). With ``isotropic``::

        nll_cos = (1 - cos(x, mu)) / v  +  c * 0.5 * log(2 pi v),     v = mean_j sigma_j^2

    with ``c = d`` for ``reduction="sum"`` and ``c = 1`` for ``"mean"``. It is the isotropic
    Gaussian NLL of the directions, exactly:

    * ``sum``:  ``-log N(x/|x|; mu/|mu|, v I)`` (unit sphere; each coordinate of a direction
      is O(1/sqrt(d)), so v lives on the scale 1/d);
    * ``mean``: ``-log N(r x/|x|; r mu/|mu|, v I) / d`` with ``r = sqrt(d)`` (coordinates of
      O(1), v on the scale of a coordinate's variance; nats per coordinate).

    A von Mises-Fisher log-density with concentration ``kappa = 1 / v`` (``d / v``) and its
    large-kappa normaliser. It ignores the norms of ``x`` and ``mu``. The normaliser makes the
    term bounded below in ``v`` (minimum at ``v = 2 (1 - cos) / c``), so a variance that gets a
    gradient here is fitted to the cross-view error instead of growing without bound.

    ``isotropic=False``: the same Gaussian of the directions with its per-coordinate variances
    ``sigma_j^2`` instead of their mean, ``gaussian_nll(r x/|x|, r mu/|mu|, logvar)`` (``r`` as
    above); it equals the isotropic form when every ``sigma_j^2 = v``. Each variance is then
    fitted to its own coordinate's error, which anchors every coordinate's level.
    """
    if not isotropic:
        r = x.shape[-1] ** 0.5 if reduction == "mean" else 1.0
        xu, mu_u = F.normalize(x, dim=-1) * r, F.normalize(mu, dim=-1) * r
        return gaussian_nll(xu, mu_u, logvar, reduction=reduction)
    v = logvar.exp().mean(dim=-1)
    c = x.shape[-1] if reduction == "sum" else 1
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; known: sum, mean")
    return (1.0 - F.cosine_similarity(x, mu, dim=-1)) / v + c * 0.5 * (v.log() + _LOG_2PI)
