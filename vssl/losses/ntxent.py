"""SimCLR's NT-Xent (normalised temperature-scaled cross-entropy)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vssl.losses._dist import gather, world
from vssl.losses._precision import float32


@float32
def ntxent(z1: Tensor, z2: Tensor, temperature: float = 0.2) -> Tensor:
    """NT-Xent over the 2N views of the global batch; returns a scalar.

    For each of the 2B local embeddings ``z_i`` (L2-normalised), with positive ``z_i+`` (the other
    view of the same image) and all other 2N - 1 gathered embeddings in the denominator::

        l_i = -log( exp(z_i . z_i+ / tau) / sum_{k != i} exp(z_i . z_k / tau) )

    averaged over i. Gathering keeps gradients, as in solo-learn.
    """
    rank, ws = world()
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # local [view1; view2], (2B, k)
    zs = F.normalize(torch.cat([gather(z1), gather(z2)]), dim=-1)  # (2N, k), N = B * ws
    n = b * ws
    logits = z @ zs.t() / temperature
    local = torch.arange(b, device=z.device) + rank * b  # global index of each local image
    self_idx = torch.cat([local, local + n])
    pos_idx = torch.cat([local + n, local])
    # Remove each embedding's similarity with itself from the softmax.
    logits = logits.masked_fill(
        F.one_hot(self_idx, num_classes=2 * n).bool(), torch.finfo(logits.dtype).min
    )
    return F.cross_entropy(logits, pos_idx)
