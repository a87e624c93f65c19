"""Cross-process helpers for losses that need the global batch (no-ops without DDP).

The two autograd functions give the gradient of the global-batch loss: each process computes
the same global quantity, so the backward pass sums the incoming gradients over processes
(``all_reduce``) before taking this process's share. DDP's averaging of parameter gradients then
yields the gradient of the mean of the per-process losses. (torch.distributed.nn.functional does
the same but is deprecated in torch 2.14; these work on gloo and NCCL alike.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        rank, ws = world()
        ctx.rank, ctx.n = rank, x.shape[0]
        out = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather(x: Tensor, grad: bool = True) -> Tensor:
    """Concatenate ``x`` (B, ...) from all processes along dim 0 (same B on every process).

    ``grad=True`` keeps the gradient path to this process's share (SimCLR's negatives);
    ``grad=False`` gathers detached copies (MoCo v3's keys).
    """
    _, ws = world()
    if ws == 1:
        return x if grad else x.detach()
    if grad:
        return _GatherWithGrad.apply(x)
    out = [torch.empty_like(x) for _ in range(ws)]
    dist.all_gather(out, x.detach().contiguous())
    return torch.cat(out, dim=0)


def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over processes, differentiable (Barlow Twins' cross-correlation)."""
    _, ws = world()
    if ws == 1:
        return x
    return _AllReduceSum.apply(x) / ws
