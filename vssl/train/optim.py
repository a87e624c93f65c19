"""Optimisers (LARS, SGD, AdamW), the linear scaling rule and warm-up + cosine schedule."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

KNOWN_OPTIMIZERS = ("lars", "sgd", "adamw")
# The warm-up starts at this fraction of the peak learning rate.
WARMUP_START_FACTOR = 1e-3


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr = base_lr * batch_size / 256``."""
    return base_lr * batch_size / 256.0


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017), solo-learn's form.

    For every parameter ``w`` with gradient ``g`` in a group without ``lars_exclude``::

        g      <- g + wd * w
        trust   = eta * |w| / (|g_raw| + wd * |w| + eps)     (1 if |w| = 0 or |g_raw| = 0)
        trust   = min(trust / lr, 1)                         (clip_lr, as solo-learn)
        g      <- trust * g

    then ``buf <- momentum * buf + g`` and ``w <- w - lr * buf`` for every parameter. Groups
    with ``lars_exclude=True`` (biases and normalisation parameters) skip both the adaptation and
    the weight decay.

    Each group is updated with ``torch._foreach_*`` kernels over all its parameters at once (the
    norms with ``_foreach_norm``, the trust ratios as one vector): a few multi-tensor kernels
    per group instead of about fifteen small kernels per parameter, and no host sync (the
    trust ratio never leaves the device).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        eps: float = 1e-8,
        clip_lr: bool = True,
    ) -> None:
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"LARS: bad lr={lr}, momentum={momentum}, wd={weight_decay}, eta={eta}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            eps=eps,
            clip_lr=clip_lr,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update_group(group, params)
        return loss

    def _update_group(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
        grads = [p.grad for p in params]
        if group["lars_exclude"]:
            d_ps = grads
        else:
            p_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            trust = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
            if group["clip_lr"]:
                trust = torch.clamp(trust / lr, max=1.0)
            trust = torch.where((p_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
            d_ps = torch._foreach_add(grads, params, alpha=wd)
            torch._foreach_mul_(d_ps, list(trust.to(grads[0].dtype).unbind(0)))
        if mom > 0:
            bufs, old_bufs, old_d = [], [], []
            for p, d in zip(params, d_ps, strict=True):
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:  # the first step: buf = g
                    state["momentum_buffer"] = buf = torch.clone(d).detach()
                else:
                    old_bufs.append(buf)
                    old_d.append(d)
                bufs.append(buf)
            if old_bufs:
                torch._foreach_mul_(old_bufs, mom)
                torch._foreach_add_(old_bufs, old_d)
            d_ps = bufs
        torch._foreach_add_(params, d_ps, alpha=-lr)


def param_groups(model: nn.Module, weight_decay: float, lars: bool) -> list[dict]:
    """Trainable parameters in groups; with ``lars``, 1-D parameters (biases, BatchNorm/LayerNorm
    weights) go to a group with ``lars_exclude=True`` and no weight decay (solo-learn's
    ``exclude_bias_n_norm``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not lars:
        return [{"params": params, "weight_decay": weight_decay}]
    regular = [p for p in params if p.ndim > 1]
    excluded = [p for p in params if p.ndim <= 1]
    groups = [{"params": regular, "weight_decay": weight_decay}]
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    lars_eta: float = 0.02,
) -> Optimizer:
    """``lars`` | ``sgd`` (momentum) | ``adamw`` over ``model``'s trainable parameters."""
    if name not in KNOWN_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(KNOWN_OPTIMIZERS)}")
    groups = param_groups(model, weight_decay, lars=name == "lars")
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def build_scheduler(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> LRScheduler:
    """Per-iteration schedule: linear warm-up from ``WARMUP_START_FACTOR * lr`` to ``lr`` over
    ``warmup_steps``, then cosine decay to ``min_lr`` at ``total_steps``::

        lr(k) = min_lr + (lr - min_lr) * (1 + cos(pi (k - W) / (K - W))) / 2,   W <= k <= K

    (``LinearLR`` then ``CosineAnnealingLR`` in a ``SequentialLR``). Constant when K = 0.
    """
    if total_steps <= 0:
        return LambdaLR(optimizer, lambda _: 1.0)
    warmup_steps = min(max(0, warmup_steps), total_steps)
    t_max = max(1, total_steps - warmup_steps)
    if warmup_steps == 0:
        return CosineAnnealingLR(optimizer, T_max=t_max, eta_min=min_lr)
    warm = LinearLR(
        optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup_steps
    )
    cosine = CosineAnnealingLR(optimizer, T_max=t_max, eta_min=min_lr)
    return SequentialLR(optimizer, [warm, cosine], milestones=[warmup_steps])
