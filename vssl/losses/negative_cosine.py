"""BYOL's regression loss: the normalised squared error, i.e. a negative cosine similarity."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vssl.losses._precision import float32


@float32
def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """``mean_i || p_i/|p_i| - z_i/|z_i| ||^2 = mean_i [2 - 2 cos(p_i, z_i)]``; returns a scalar.

    ``z`` is the target (teacher) projection and is detached here.
    """
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()
