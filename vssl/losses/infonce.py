"""MoCo v3's InfoNCE: each query's positive is the key of the same image, the rest are negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vssl.losses._dist import gather, world
from vssl.losses._precision import float32


@float32
def infonce(query: Tensor, key: Tensor, temperature: float = 0.2) -> Tensor:
    """``2 tau * CE(q_i . k_j / tau, j = i)`` over the global batch of keys; returns a scalar.

    ``q`` and ``k`` are L2-normalised; keys from all processes are gathered without gradient
    and the positive of query ``i`` on rank ``r`` is key ``r * B + i``. The ``2 tau`` factor
    follows MoCo v3 (and solo-learn); ``infonce(q1, k2) + infonce(q2, k1)`` is the symmetric loss.
    """
    rank, _ = world()
    q = F.normalize(query, dim=-1)
    k = gather(F.normalize(key, dim=-1), grad=False)
    logits = q @ k.t() / temperature
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels) * (2.0 * temperature)
