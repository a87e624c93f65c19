"""Monitors run during pretraining: the monitors' frozen features (:func:`monitor_features`,
not to be confused with the ``extract_features`` stage, :mod:`vssl.eval.extract`), the online
linear probe's accuracy, the kNN monitor (:func:`evaluate` runs both once per epoch) and the
representation-collapse statistic, and the steady-state throughput of a run
(:func:`steady_images_per_second`).

The kNN math is :mod:`vssl.eval.knn` (the same code as the final kNN probe): cosine similarity
on L2-normalised backbone features, the k = 20 nearest train samples vote with weight
``exp(s / T)``, T = 0.07. Accuracies are in percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KNN_K = 20
KNN_T = 0.07


def embedding_spread(z: Tensor) -> Tensor:
    """Collapse statistic of embeddings ``z`` (B, k): ``sqrt(k) * mean_j std_i(z_i / |z_i|)_j``.

    For directions spread uniformly over the sphere each coordinate has std ~ 1/sqrt(k), so
    the statistic is ~1; it is 0 when every sample maps to the same direction (collapse).
    """
    zn = F.normalize(z.detach().float(), dim=1)
    return zn.std(0).mean() * math.sqrt(zn.shape[1])


def _shard(n: int, rank: int, world: int) -> tuple[Tensor, int]:
    """Rank's contiguous slice of ``range(n)`` padded (repeating the last index) to the same
    length on every rank, so an all-gather of equal-size blocks restores the order."""
    per = max(1, math.ceil(n / world))
    idx = torch.arange(rank * per, (rank + 1) * per).clamp_(max=n - 1)
    return idx, per


@torch.no_grad()
def monitor_features(
    backbone: nn.Module,
    source: dict[str, Any],
    accelerator: Any,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Backbone features (N, D) float32 and labels (N,) of an evaluation set, on every rank.

    ``source`` is ``{"images": uint8 (N, C, H, W), "labels": (N,), "transform": batched eval
    transform}`` for in-memory data (batches are transformed on the device), or
    ``{"dataset": Dataset of (tensor, label), "num_workers": int}``. Each rank computes its
    shard, then the shards are gathered. The backbone runs in eval mode (BatchNorm running
    statistics) and is put back in its previous mode.
    """
    from torch.utils.data import DataLoader, Subset

    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    n = len(source["labels"]) if "labels" in source else len(source["dataset"])
    idx, _ = _shard(n, rank, world)
    was_training = backbone.training
    backbone.eval()
    feats: list[Tensor] = []
    try:
        if "images" in source:
            tf: Callable[[Tensor], Tensor] = source["transform"]
            images = source["images"]
            for chunk in idx.split(batch_size):
                x = tf(images[chunk.to(images.device)].to(device, non_blocking=True))
                with accelerator.autocast():
                    feats.append(backbone(x).float())
            labels = source["labels"][idx.to(source["labels"].device)].to(device)
        else:
            loader = DataLoader(
                Subset(source["dataset"], idx.tolist()),
                batch_size=batch_size,
                num_workers=source.get("num_workers", 0),
            )
            ys = []
            for x, y in loader:
                with accelerator.autocast():
                    feats.append(backbone(x.to(device, non_blocking=True)).float())
                ys.append(torch.as_tensor(y))
            labels = torch.cat(ys).to(device)
    finally:
        backbone.train(was_training)
    f = torch.cat(feats)
    if world > 1:
        f, labels = accelerator.gather(f), accelerator.gather(labels)
    return f[:n], labels[:n]


def probe_top1(probe: nn.Module, feats: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (percent) of the online linear probe on features."""
    was_training = probe.training
    probe.eval()
    try:
        with torch.no_grad():
            pred = probe(feats.float()).argmax(1)
    finally:
        probe.train(was_training)
    return float((pred == labels).float().mean() * 100.0)


def knn_top1(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = KNN_K,
    temperature: float = KNN_T,
) -> float:
    """Weighted cosine kNN top-1 (percent), via :func:`vssl.eval.knn.knn_accuracy`."""
    from vssl.eval.knn import knn_accuracy

    acc = knn_accuracy(
        train_feats,
        train_labels,
        test_feats,
        test_labels,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        topk=(1,),
    )
    return float(acc[1])


def evaluate(
    backbone: nn.Module,
    probe: nn.Module | None,
    test: dict[str, Any],
    knn_train: dict[str, Any] | None,
    accelerator: Any,
    batch_size: int,
    num_classes: int,
) -> dict[str, float | None]:
    """``{"online_probe_top1", "knn_top1"}`` (percent) on the ``test`` source: the probe's
    (None without a probe) and the kNN monitor's against ``knn_train`` (None without it)."""
    out: dict[str, float | None] = {"online_probe_top1": None, "knn_top1": None}
    test_f, test_y = monitor_features(backbone, test, accelerator, batch_size)
    if probe is not None:
        out["online_probe_top1"] = probe_top1(probe, test_f, test_y)
    if knn_train is not None:
        train_f, train_y = monitor_features(backbone, knn_train, accelerator, batch_size)
        out["knn_top1"] = knn_top1(train_f, train_y, test_f, test_y, num_classes=num_classes)
    return out


def steady_images_per_second(
    history: list[dict[str, Any]], first_epoch_here: int = 1
) -> float | None:
    """Training images per second over the run's epochs except epoch 1 and
    ``first_epoch_here`` (the first epoch this process trained, after a resume): those pay the
    warm-up (allocator, cuDNN autotuning, torch.compile). From the history rows'
    ``images_per_second`` and ``epoch_time_s``; None with no other epoch."""
    images = seconds = 0.0
    for row in history:
        ips, dt = row.get("images_per_second"), row.get("epoch_time_s")
        if row.get("epoch") in (1, first_epoch_here) or not ips or not dt:
            continue
        images += ips * dt
        seconds += dt
    return images / seconds if seconds > 0 else None
