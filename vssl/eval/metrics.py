"""Top-k accuracy with a deterministic tie rule, shared by the linear and kNN probes."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def class_rank(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The 0-based rank of each sample's true class in its score row.

    ``rank_i = #{c : s_ic > s_iy} + #{c < y : s_ic = s_iy}`` with ``y = labels_i``: ties are
    broken towards the lower class index, exactly like ``argmax`` (and scikit-learn's
    ``predict``), so top-1 agrees with ``argmax`` and top-k never depends on sort stability.
    """
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"scores (N, C) and labels (N,) expected, got {scores.shape}, {labels.shape}"
        )
    labels = labels.to(scores.device, torch.long)
    if labels.numel() and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {scores.shape[1]}), got [{labels.min()}, {labels.max()}]"
        )
    own = scores.gather(1, labels[:, None])
    cls = torch.arange(scores.shape[1], device=scores.device)[None, :]
    return (scores > own).sum(1) + ((scores == own) & (cls < labels[:, None])).sum(1)


def topk_accuracy(
    scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Top-k accuracy in percent: ``100 * mean(rank_i < k)`` for each k (see :func:`class_rank`).

    k larger than the number of classes counts every sample as correct (100%).
    """
    rank = class_rank(scores, labels)
    return {int(k): 100.0 * (rank < k).double().mean().item() for k in ks}
