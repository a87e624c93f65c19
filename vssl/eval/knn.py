"""Weighted k-nearest-neighbour classifier on frozen features (InstDisc / DINO protocol).

Features are L2-normalised, similarity is cosine ``s_ij = <x_i, t_j> / (|x_i| |t_j|)``; the k most
similar train samples vote for their labels with weight ``exp(s_ij / T)`` (T = 0.07), or 1 with
``weighting="uniform"`` (scikit-learn's ``KNeighborsClassifier(metric="cosine")`` rule). The
class score is the sum of its votes. Rows of the test set are processed in chunks, so memory is
``O(chunk * n_train)`` whatever the test size; one pass serves every k (the top-``max(k)``
neighbours are found once and truncated).

Works on CPU or GPU tensors (the pretraining engine reuses it for its online kNN monitor).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from vssl.eval.metrics import topk_accuracy

Weighting = Literal["temperature", "uniform"]
# Elements of the (chunk, n_train) similarity block: 2**25 floats = 128 MiB.
_SIM_BUDGET = 2**25

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(dtype) if dtype is not None else t


def clamp_k(k: int, n_train: int) -> int:
    """``min(k, n_train)``, warning when it clamps (a tiny train set cannot supply k neighbours)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n_train:
        warnings.warn(
            f"kNN: k={k} exceeds the {n_train} train samples; using k={n_train}", stacklevel=3
        )
        return n_train
    return k


def knn_classify_multi(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    ks: Sequence[int],
    temperature: float = 0.07,
    num_classes: int | None = None,
    *,
    weighting: Weighting = "temperature",
    chunk_size: int | None = None,
) -> dict[int, torch.Tensor]:
    """Class scores (N_test, C) for each requested k, from a single neighbour search.

    With temperature weighting the votes are ``exp((s_ij - 1) / T)``: a constant factor
    ``exp(-1/T)`` below ``exp(s_ij / T)`` that keeps them finite for any T (no effect on ranks).
    Keys of the result are the requested k; k > n_train is clamped to n_train with a warning.
    """
    if weighting not in ("temperature", "uniform"):
        raise ValueError(f"unknown weighting {weighting!r}; known: temperature, uniform")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    train = _as_tensor(train_feats, torch.float32)
    test = _as_tensor(test_feats, torch.float32).to(train.device)
    labels = _as_tensor(train_labels, torch.long).to(train.device)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"train (N, D) and test (M, D) expected, got {train.shape}, {test.shape}")
    if labels.shape != (train.shape[0],):
        raise ValueError(f"train_labels must be ({train.shape[0]},), got {tuple(labels.shape)}")
    n_train, n_test = train.shape[0], test.shape[0]
    if n_train == 0:
        raise ValueError("kNN needs at least one train sample")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if int(labels.max()) >= num_classes or int(labels.min()) < 0:
        raise ValueError(f"train_labels must lie in [0, {num_classes})")
    used = {}
    for k in ks:  # a loop, not a comprehension: the warning then points at our caller
        used[int(k)] = clamp_k(int(k), n_train)
    k_max = max(used.values())

    train = F.normalize(train, dim=1)
    test = F.normalize(test, dim=1)
    chunk = chunk_size or max(1, _SIM_BUDGET // n_train)
    out = {k: torch.zeros(n_test, num_classes, device=train.device) for k in used}
    for start in range(0, n_test, chunk):
        sim = test[start : start + chunk] @ train.T
        top_sim, top_idx = sim.topk(k_max, dim=1)  # sorted, most similar first
        top_lab = labels[top_idx]
        if weighting == "temperature":
            votes = torch.exp((top_sim - 1.0) / temperature)
        else:
            votes = torch.ones_like(top_sim)
        for k, kk in used.items():
            out[k][start : start + chunk].scatter_add_(1, top_lab[:, :kk], votes[:, :kk])
    return out


def knn_classify(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    k: int,
    temperature: float = 0.07,
    num_classes: int | None = None,
    *,
    weighting: Weighting = "temperature",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Class scores (N_test, C): ``score_ic = sum_{j in kNN(i)} w_ij [y_j = c]`` (module docstring)."""
    return knn_classify_multi(
        train_feats,
        train_labels,
        test_feats,
        [k],
        temperature,
        num_classes,
        weighting=weighting,
        chunk_size=chunk_size,
    )[k]


def knn_predict(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    k: int,
    temperature: float = 0.07,
    num_classes: int | None = None,
    *,
    weighting: Weighting = "temperature",
) -> torch.Tensor:
    """Predicted class per test row (argmax of :func:`knn_classify`; ties -> lowest class)."""
    return knn_classify(
        train_feats, train_labels, test_feats, k, temperature, num_classes, weighting=weighting
    ).argmax(1)


def knn_accuracy(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    test_labels: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    *,
    topk: Sequence[int] = (1, 5),
    weighting: Weighting = "temperature",
) -> dict[int, float]:
    """Top-k accuracies in percent, e.g. ``{1: 91.2, 5: 99.6}``."""
    test_labels = _as_tensor(test_labels, torch.long)
    if num_classes is None:
        num_classes = max(int(_as_tensor(train_labels).max()), int(test_labels.max())) + 1
    scores = knn_classify(
        train_feats, train_labels, test_feats, k, temperature, num_classes, weighting=weighting
    )
    return topk_accuracy(scores, test_labels.to(scores.device), topk)
