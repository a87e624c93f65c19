"""A host copy of a run's state, kept after every epoch that the cadence does not checkpoint, so
that a stop signal can save the last completed epoch (:mod:`vssl.train.engine`).

The state (model, teacher, optimiser, probe; about 200 MB at the paper's width) is copied into
host buffers that are allocated once and reused. On CUDA the buffers are pinned and the copies
are issued with ``non_blocking=True``: they queue on the current stream behind the epoch's last
kernels and ahead of the next epoch's, so they copy exactly the epoch's final state while the
host goes on, and only :meth:`StateSnapshot.read` waits for them. Before, the engine made a
fresh pageable host tensor per state tensor, each copy a blocking transfer: 0.16 s on an H100 at
full CIFAR-10's size in the one (first-epoch) sample of ``benchmarks/epoch_costs.py``'s first GPU
run; ``benchmarks/snapshot_cost.py`` times both ways.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class StateSnapshot:
    """Reusable host copy of a nested checkpoint dict (dicts, lists and tuples of tensors and
    plain values).

    :meth:`update` copies the tensors into buffers keyed by their place in the structure (a
    buffer is reallocated only when a tensor's shape, layout or dtype changes there); dicts,
    lists and tuples are rebuilt, other values kept as given (numbers, strings). :meth:`read` returns the
    copy once every copy has landed. The buffers are overwritten by the next :meth:`update`:
    read or save the copy before that.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[Any, ...], Tensor] = {}
        self._contents: Any = None
        self._pending: list[torch.cuda.Event] = []

    def update(self, contents: Any) -> None:
        """Start copying ``contents``' tensors into the buffers (asynchronously for CUDA ones)."""
        self._pending = []
        devices: set[torch.device] = set()
        self._contents = self._copy(contents, (), devices)
        for device in devices:  # one event per CUDA device whose tensors were copied
            with torch.cuda.device(device):
                event = torch.cuda.Event()
                event.record()
            self._pending.append(event)

    def read(self) -> Any:
        """The copy of the last :meth:`update` (None before any), after its copies completed."""
        for event in self._pending:
            event.synchronize()
        self._pending = []
        return self._contents

    @property
    def nbytes(self) -> int:
        """Bytes held in the buffers."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def _copy(self, obj: Any, key: tuple[Any, ...], devices: set[torch.device]) -> Any:
        if isinstance(obj, Tensor):
            return self._copy_tensor(obj.detach(), key, devices)
        if isinstance(obj, dict):
            return {k: self._copy(v, (*key, k), devices) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v, (*key, i), devices) for i, v in enumerate(obj))
        return obj

    def _copy_tensor(self, t: Tensor, key: tuple[Any, ...], devices: set[torch.device]) -> Tensor:
        cuda = t.device.type == "cuda"
        buf = self._buffers.get(key)
        if (
            buf is None
            or buf.shape != t.shape
            or buf.stride() != t.stride()
            or buf.dtype != t.dtype
            or buf.is_pinned() != cuda
        ):
            # the source's layout (channels-last weights stay so): the copy is one memcpy
            buf = torch.empty_like(t, device="cpu", pin_memory=cuda)
            self._buffers[key] = buf
        buf.copy_(t, non_blocking=cuda)
        if cuda:
            devices.add(t.device)
        return buf
