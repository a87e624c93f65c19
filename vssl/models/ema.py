"""Exponential moving average (momentum) teachers and BYOL's cosine schedule for tau."""

from __future__ import annotations

import copy
import math
import weakref

import torch
import torch.nn as nn
from torch import Tensor


def make_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` with ``requires_grad=False`` on every parameter.

    The teacher is then excluded from ``[p for p in m.parameters() if p.requires_grad]`` (what
    the optimiser gets) and from DDP's gradient reduction.
    """
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# teacher -> (weak reference to its student, teacher parameters, student parameters)
_PAIRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pairs(teacher: nn.Module, student: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """The (teacher, student) parameter lists, their names checked on the first update of the
    pair and then kept (walking a ResNet's modules costs ~80 us a call). ``load_state_dict``
    and ``.to()`` keep the parameter objects; after anything that replaces them
    (``load_state_dict(assign=True)``), call :func:`forget_pairs`."""
    hit = _PAIRS.get(teacher)
    if hit is not None and hit[0]() is student:
        return hit[1], hit[2]
    t_named = list(teacher.named_parameters())
    s_named = list(student.named_parameters())
    if [n for n, _ in t_named] != [n for n, _ in s_named]:
        raise ValueError("ema_update: teacher and student have different parameter names")
    t_list, s_list = [p for _, p in t_named], [p for _, p in s_named]
    _PAIRS[teacher] = (weakref.ref(student), t_list, s_list)
    return t_list, s_list


def forget_pairs(teacher: nn.Module) -> None:
    """Drop the parameter lists :func:`ema_update` keeps for ``teacher``."""
    _PAIRS.pop(teacher, None)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, tau: float) -> None:
    """In place, for every parameter: ``theta_t <- tau * theta_t + (1 - tau) * theta_s``.

    Only parameters are averaged (as in BYOL and solo-learn); BatchNorm running statistics of the
    teacher come from the teacher's own forward passes in train mode. Call it on the unwrapped
    module (``accelerator.unwrap_model``), after the optimiser step.

    One ``torch._foreach_lerp_`` over all parameters (``theta_t + (1 - tau) (theta_s -
    theta_t)``, exact at tau = 0 and tau = 1), as timm's ModelEmaV3: a few multi-tensor kernels
    instead of two per parameter.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1], got {tau}")
    t_list, s_list = _pairs(teacher, student)
    if not t_list:
        return
    if any(pt.dtype != ps.dtype for pt, ps in zip(t_list, s_list, strict=True)):
        s_list = [ps.to(pt.dtype) for pt, ps in zip(t_list, s_list, strict=True)]
    torch._foreach_lerp_(t_list, s_list, 1.0 - tau)


def cosine_tau(
    step: int, total_steps: int, tau_base: float = 0.99, tau_final: float = 1.0
) -> float:
    """BYOL's schedule: ``tau(k) = tau_final - (tau_final - tau_base) * (cos(pi k / K) + 1) / 2``.

    ``tau(0) = tau_base`` and ``tau(K) = tau_final`` exactly (the step is clamped to [0, K]).
    """
    if total_steps <= 0:
        return float(tau_final)
    k = min(max(step, 0), total_steps)
    if k == 0:
        return float(tau_base)
    if k == total_steps:
        return float(tau_final)
    return tau_final - (tau_final - tau_base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0
