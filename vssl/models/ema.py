"""Exponential moving average (momentum) teachers and BYOL's cosine schedule for tau."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` with ``requires_grad=False`` on every parameter.

    The teacher is then excluded from ``[p for p in m.parameters() if p.requires_grad]`` (what
    the optimiser gets) and from DDP's gradient reduction.
    """
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, tau: float) -> None:
    """In place, for every parameter: ``theta_t <- tau * theta_t + (1 - tau) * theta_s``.

    Only parameters are averaged (as in BYOL and solo-learn); BatchNorm running statistics of the
    teacher come from the teacher's own forward passes in train mode. Call it on the unwrapped
    module (``accelerator.unwrap_model``), after the optimiser step.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1], got {tau}")
    t_params = list(teacher.named_parameters())
    s_params = list(student.named_parameters())
    if [n for n, _ in t_params] != [n for n, _ in s_params]:
        raise ValueError("ema_update: teacher and student have different parameter names")
    for (_, pt), (_, ps) in zip(t_params, s_params, strict=True):
        pt.mul_(tau).add_(ps.detach().to(pt.dtype), alpha=1.0 - tau)


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
