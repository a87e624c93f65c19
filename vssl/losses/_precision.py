"""Run a loss in float32 even inside an autocast (bf16/fp16) region."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable[..., torch.Tensor])


def float32(fn: F) -> F:
    """Decorator: autocast off and tensor arguments cast to float32 (float64 stays float64).

    Log-variances are exponentiated and logits go through a softmax; half precision would
    coarsen both, and matmuls inside an autocast region would otherwise run in bf16.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"

        def up(a):
            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != torch.float64:
                return a.float()
            return a

        with torch.autocast(device_type=device, enabled=False):
            return fn(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
