"""Barlow Twins' redundancy-reduction loss (solo-learn's scaling)."""

from __future__ import annotations

import torch
from torch import Tensor

from vssl.losses._dist import all_reduce_mean
from vssl.losses._precision import float32


@float32
def barlow_twins_loss(
    z1: Tensor, z2: Tensor, lamb: float = 0.0051, scale_loss: float = 0.1
) -> Tensor:
    """``scale * [ sum_i (1 - C_ii)^2 + lamb * sum_{i != j} C_ij^2 ]``; returns a scalar.

    ``C = z1n^T z2n / N`` is the cross-correlation of the batch-standardised embeddings
    (``zn = (z - mean) / sqrt(var + 1e-5)`` over the local batch, biased variance, as
    ``BatchNorm1d(affine=False)`` does in solo-learn), averaged over processes.
    """
    n = z1.shape[0]
    z1n = (z1 - z1.mean(0)) / (z1.var(0, unbiased=False) + 1e-5).sqrt()
    z2n = (z2 - z2.mean(0)) / (z2.var(0, unbiased=False) + 1e-5).sqrt()
    corr = all_reduce_mean(z1n.t() @ z2n / n)
    eye = torch.eye(corr.shape[0], device=corr.device, dtype=torch.bool)
    on_diag = (corr.diagonal() - 1.0).pow(2).sum()
    off_diag = corr.masked_select(~eye).pow(2).sum()
    return scale_loss * (on_diag + lamb * off_diag)
