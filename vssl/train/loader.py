"""Training batches whose order and augmentation are functions of (seed, epoch) only.

That is what makes ``--resume`` exact: a run stopped after epoch e and resumed draws the same
batches with the same augmentations as a run that never stopped.

- Order: epoch e shuffles ``range(N)`` with ``torch.randperm`` seeded by ``mix_seed(seed,
  SHUFFLE, e)`` and drops the last incomplete global batch. Optimiser step s takes the global
  batch ``perm[s*G:(s+1)*G]``; its ``world * accum`` equal chunks go to (micro-step m, rank r)
  as chunk ``m * world + r``.
- Per-sample CPU augmentation (DataLoader workers): sample i of epoch e is augmented under
  ``torch.manual_seed(mix_seed(seed, AUGMENT, e, i))`` inside ``fork_rng`` (so neither the
  worker assignment nor the process count changes an image's views).
- Batched augmentation (:class:`vssl.augment.TensorTwoViewAugment`, plain tensor ops on the
  accelerator or on CPU; kornia's ``GPUTwoViewAugment`` on request): micro-batch (e, s, m) of
  rank r is augmented under ``mix_seed(seed, AUGMENT, e, s, m, r)`` (the global RNG of the
  images' device, forked and restored). The epoch's sample indices go to the device once, at
  the start of the epoch (pinned memory, non-blocking), not once per micro-batch.
- Split augmentation (image folders with ``gpu_augment``; ``auto``: on an accelerator): the
  workers decode each image and draw its two crops and flips
  (:class:`vssl.augment.TwoViewCrops`) under sample i's seed as above; the uint8 views go to the
  device (pinned, non-blocking) and the photometric ops run there on the micro-batch
  (:meth:`vssl.augment.TensorTwoViewAugment.photometric`) under micro-batch (e, s, m, r)'s
  seed as above.

:class:`TrainBatches` picks one of the three for a run and yields each epoch's micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Purpose tags so the streams of one seed never coincide.
SHUFFLE, AUGMENT, STEP = 1, 2, 3


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence hashing: well mixed, platform-free)."""
    words = [int(p) % 2**32 for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def steps_per_epoch(n: int, global_batch: int) -> int:
    return n // global_batch


def epoch_micro_batches(
    n: int, global_batch: int, accum: int, world: int, rank: int, seed: int, epoch: int
) -> list[list[Tensor]]:
    """``plan[s][m]``: the sample indices of rank ``rank``'s micro-batch m of step s."""
    g = torch.Generator().manual_seed(mix_seed(seed, SHUFFLE, epoch))
    perm = torch.randperm(n, generator=g)
    steps = steps_per_epoch(n, global_batch)
    micro = global_batch // (world * accum)
    plan = []
    for s in range(steps):
        chunks = perm[s * global_batch : (s + 1) * global_batch].view(accum * world, micro)
        plan.append([chunks[m * world + rank] for m in range(accum)])
    return plan


class SeededTwoViewDataset:
    """Items ``(epoch, i) -> ((view1, view2), label)`` with the views drawn under a seed that
    depends only on (seed, epoch, i). ``images`` uint8 (N, C, H, W) or any Dataset of
    (uint8 tensor, label)."""

    def __init__(self, base: Any, transform: Callable[[Tensor], tuple[Tensor, Tensor]], seed: int):
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[Tensor, Tensor], int]:
        epoch, i = key
        img, label = self.base[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, AUGMENT, epoch, i))
            v1, v2 = self.transform(img)
        return (v1, v2), label


class _PlanSampler:
    """A batch sampler over a fixed plan: yields ``[(epoch, i), ...]`` per micro-batch."""

    def __init__(self, plan: list[list[Tensor]], epoch: int) -> None:
        self.batches = [[(epoch, int(i)) for i in mb] for step in plan for mb in step]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _plan_loader(
    dataset: SeededTwoViewDataset, plan: list[list[Tensor]], epoch: int, num_workers: int,
    device: torch.device,
) -> Any:  # fmt: skip
    """A DataLoader over ``plan``'s micro-batches of ``epoch``, pinned for CUDA."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=_PlanSampler(plan, epoch),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )


@contextmanager
def _micro_batch_rng(device: torch.device, *parts: int) -> Iterator[None]:
    """Inside: the global RNG of ``device`` (and the CPU's) seeded by ``mix_seed(*parts)``,
    forked and restored after."""
    fork = {"devices": [device.index or 0], "device_type": "cuda"} if device.type == "cuda" else {}
    with torch.random.fork_rng(**({"devices": []} | fork)):
        torch.manual_seed(mix_seed(*parts))
        yield


def cpu_epoch(
    dataset: SeededTwoViewDataset,
    plan: list[list[Tensor]],
    epoch: int,
    num_workers: int,
    device: torch.device,
    channels_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Micro-batches ``(x1, x2, y)`` on ``device`` from DataLoader workers (per-sample views),
    the views ``channels_last`` if asked."""
    fmt = torch.channels_last if channels_last else torch.preserve_format
    batches = iter(_plan_loader(dataset, plan, epoch, num_workers, device))
    try:
        for (x1, x2), y in batches:
            yield (
                x1.to(device, non_blocking=True, memory_format=fmt),
                x2.to(device, non_blocking=True, memory_format=fmt),
                torch.as_tensor(y).to(device, non_blocking=True),
            )
    finally:
        shut_down_workers(batches)


def prefetch_to_device(
    batches: Iterator[tuple[Tensor, ...]], device: torch.device
) -> Iterator[tuple[Tensor, ...]]:
    """``batches`` (tuples of pinned CPU tensors) on ``device``, one batch ahead: on CUDA each
    batch is copied on a side stream while the previous one is being used, and the compute
    stream waits for that copy only when it takes the batch (``record_stream`` keeps the
    memory until the compute stream is done with it). Off CUDA a plain ``.to(device)``."""
    if device.type != "cuda":
        for batch in batches:
            yield tuple(t.to(device) for t in batch)
        return
    copy_stream = torch.cuda.Stream(device)

    def start(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        with torch.cuda.stream(copy_stream):
            return tuple(t.to(device, non_blocking=True) for t in batch)

    ahead = next(batches, None)
    ahead = None if ahead is None else start(ahead)
    while ahead is not None:
        compute = torch.cuda.current_stream(device)
        compute.wait_stream(copy_stream)
        for t in ahead:
            t.record_stream(compute)
        ready = ahead
        following = next(batches, None)
        ahead = None if following is None else start(following)
        yield ready


def split_epoch(
    dataset: SeededTwoViewDataset,
    augment: Any,
    plan: list[list[Tensor]],
    seed: int,
    epoch: int,
    rank: int,
    num_workers: int,
    device: torch.device,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Micro-batches ``(x1, x2, y)``: ``dataset`` yields each sample's two uint8 crops from the
    DataLoader workers, they reach ``device`` a batch ahead (:func:`prefetch_to_device`), and
    ``augment.photometric`` finishes each micro-batch there."""
    accum = len(plan[0]) if plan else 1
    batches = iter(_plan_loader(dataset, plan, epoch, num_workers, device))
    flat = ((c1, c2, torch.as_tensor(y)) for (c1, c2), y in batches)
    try:
        for k, (c1, c2, y) in enumerate(prefetch_to_device(flat, device)):
            s, m = divmod(k, accum)  # the sampler yields micro-batches step by step
            with _micro_batch_rng(device, seed, AUGMENT, epoch, s, m, rank):
                x1, x2 = augment.photometric(c1, c2)
            yield x1, x2, y
    finally:
        shut_down_workers(batches)


def _ignore_signal(signum: int, frame: Any) -> None:
    """A no-op handler; not ``SIG_IGN``, which for SIGCHLD makes the kernel reap the
    children itself, so the workers' joins would find nothing to wait for."""


def shut_down_workers(batches: Any) -> None:
    """Join the workers of a DataLoader iterator now (a no-op when it has none or they are
    joined already), with PyTorch's SIGCHLD handler set aside while they exit.

    A stop by a process-group SIGTERM (``scancel``, Snakemake) kills the workers too. A worker
    that dies while the iterator shuts down makes PyTorch's handler raise "DataLoader worker
    killed by signal" inside that shutdown, which runs in ``__del__`` when the iterator is
    dropped: an error nobody can catch, printed as a traceback. Workers dying while their
    iterator is being closed is expected, so the handler waits until they are joined (their pids
    are then unregistered, so nothing is left for it to report)."""
    # PyTorch's own (private, idempotent) shutdown; only multi-process iterators have one.
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is None:
        return
    import signal
    import threading

    handler = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGCHLD"):
        handler = signal.getsignal(signal.SIGCHLD)
    if handler is None:  # not ours to change (another thread, or a handler set outside Python)
        shutdown()
        return
    signal.signal(signal.SIGCHLD, _ignore_signal)
    try:
        shutdown()
    finally:
        signal.signal(signal.SIGCHLD, handler)


def batched_epoch(
    images: Tensor,
    labels: Tensor,
    augment: Callable[[Tensor], tuple[Tensor, Tensor]],
    plan: list[list[Tensor]],
    seed: int,
    epoch: int,
    rank: int,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Micro-batches ``(x1, x2, y)`` augmented in batches where ``images`` live (uint8 on the
    accelerator, or CPU). The plan's indices are copied to that device once (pinned,
    non-blocking); nothing here waits for the device."""
    if not plan:
        return
    device = images.device
    indices = torch.stack([torch.stack(step) for step in plan])  # (steps, accum, micro)
    if device.type == "cuda":
        indices = indices.pin_memory()
    indices = indices.to(device, non_blocking=True)
    for s in range(indices.shape[0]):
        for m in range(indices.shape[1]):
            idx = indices[s, m]
            with _micro_batch_rng(device, seed, AUGMENT, epoch, s, m, rank):
                x1, x2 = augment(images[idx])
            yield x1, x2, labels[idx]


def augment_mode(train: dict[str, Any], gpu_augment: bool) -> str:
    """How a training source is augmented: ``batched`` (in-memory uint8 images, the whole
    recipe on the device), ``split`` (a dataset such as an image folder: decode, crop and flip
    in the workers, the rest on the device) or ``per_sample`` (everything in the workers)."""
    if not gpu_augment:
        return "per_sample"
    return "batched" if "images" in train else "split"


class TrainBatches:
    """One process's training micro-batches ``(x1, x2, y)``, epoch by epoch.

    ``train`` is a plan's training source (:class:`vssl.train.plan.Plan`). With
    ``gpu_augment`` and in-memory images (``train["images"]``) its uint8 images and labels are
    moved to ``device`` once and augmented there in batches (:func:`batched_epoch`; ``batched``
    picks the implementation: ``"tensor"``, :class:`~vssl.augment.TensorTwoViewAugment`, or
    ``"kornia"``); with ``gpu_augment`` and a dataset (an image folder) the workers decode and
    crop, the device does the rest (:func:`split_epoch`); otherwise the views are drawn per
    sample in ``num_workers`` DataLoader workers (:func:`cpu_epoch`). The images are
    normalised with ``mean``/``std`` after the augmentation ``recipe``; the views come
    ``channels_last`` if asked, and ``compile_augment`` compiles the plain-tensor ops.
    """

    def __init__(
        self,
        train: dict[str, Any],
        recipe: Any,
        mean: Any,
        std: Any,
        *,
        gpu_augment: bool,
        device: torch.device,
        seed: int,
        global_batch: int,
        accum: int,
        world: int,
        rank: int,
        num_workers: int,
        channels_last: bool = False,
        batched: str = "tensor",
        compile_augment: bool = False,
    ) -> None:
        from vssl.augment import (
            GPUTwoViewAugment,
            TensorTwoViewAugment,
            TwoViewCrops,
            TwoViewTransform,
        )

        self.n = len(train["labels"]) if "labels" in train else len(train["dataset"])
        self.gpu_augment, self.device, self.seed = gpu_augment, device, seed
        self.global_batch, self.accum, self.world, self.rank = global_batch, accum, world, rank
        self.num_workers, self.channels_last = num_workers, channels_last
        self.mode = augment_mode(train, gpu_augment)
        if self.mode != "per_sample" and batched == "tensor":
            aug: torch.nn.Module = TensorTwoViewAugment(
                recipe, mean, std, channels_last=channels_last
            )
            if compile_augment:
                aug.compile_ops()
        if self.mode == "split":
            if batched != "tensor":
                raise ValueError("split augmentation (an image folder) has the tensor path only")
            self.augment = aug.to(device)
            self.dataset = SeededTwoViewDataset(train["dataset"], TwoViewCrops(recipe), seed)
        elif self.mode == "batched":
            if batched == "kornia":
                aug = GPUTwoViewAugment(recipe, mean, std)
            elif batched != "tensor":
                raise ValueError(f"unknown batched augmentation {batched!r}; known: tensor, kornia")
            self.augment = aug.to(device)
            self.images = train["images"].to(device)
            self.labels = train["labels"].to(device)
        else:
            from vssl.data import TensorImageDataset

            base = train.get("dataset") or TensorImageDataset(train["images"], train["labels"])
            self.dataset = SeededTwoViewDataset(base, TwoViewTransform(recipe, mean, std), seed)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Epoch ``epoch``'s micro-batches of this rank (see the module docstring)."""
        plan = epoch_micro_batches(
            self.n, self.global_batch, self.accum, self.world, self.rank, self.seed, epoch
        )
        if self.mode == "batched":
            return batched_epoch(
                self.images, self.labels, self.augment, plan, self.seed, epoch, self.rank
            )
        if self.mode == "split":
            return split_epoch(
                self.dataset,
                self.augment,
                plan,
                self.seed,
                epoch,
                self.rank,
                self.num_workers,
                self.device,
            )
        return cpu_epoch(
            self.dataset, plan, epoch, self.num_workers, self.device, self.channels_last
        )
