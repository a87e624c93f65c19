"""Run guards: a non-finite loss stops the run; collapse of the representation or of VSSL's
variances raises a logged warning.

Non-finite loss (:class:`NonFiniteWatch`): the check never makes a training step wait for the
device. Each micro-step's loss is tested on the device and the first optimiser step whose loss
was NaN/inf is kept there; the host reads it every ``pretrain.log_every`` optimiser steps and at
the end of every epoch, before the epoch is evaluated, checkpointed or kept for a checkpoint on
a signal. So a non-finite step is followed by at most ``log_every - 1`` more steps (or the rest
of its epoch) on the bad weights, then the run stops with :class:`NonFiniteLossError` naming the
first bad step; nothing trained after the last read is ever saved, and the last checkpoint on
disk (written at an epoch end whose read was clean) stays the last good one.

Thresholds (documented here, used by the engine once per epoch on the epoch means, through
:func:`epoch_warnings`):

- ``COLLAPSE_SPREAD = 0.01``: :func:`vssl.train.monitor.embedding_spread` of the student
  embeddings ``z`` (``sqrt(k) * mean_j std_i(z_i/|z_i|)_j``: about 1 when directions are spread
  over the sphere, 0 when every image maps to one direction) below 1% of the spread value.
  For k = 256 that is a per-dimension std of 6e-4.
- ``SIGMA2_FLOOR_FACTOR = 2``: VSSL's mean student variance within a factor 2 of its lower bound
  ``exp(logvar_min)``: the posterior has shrunk to the clamp and the KL/likelihood balance is
  gone (the mean is dominated by large values, so this means nearly every dimension is there).
  Checked for methods with bounded log-variances (``Method.logvar_bounds`` not None).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("vssl.train")

COLLAPSE_SPREAD = 0.01
SIGMA2_FLOOR_FACTOR = 2.0


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


def nonfinite_message(
    step: int, epoch: int, last_checkpoint: str | None, seen_after: int | None = None
) -> str:
    where = (
        f"the last good checkpoint is {last_checkpoint}"
        if last_checkpoint
        else "no checkpoint was written yet"
    )
    seen = (
        f"found at the check after step {seen_after}; nothing trained since was saved; "
        if seen_after is not None and seen_after != step
        else ""
    )
    return (
        f"non-finite loss at optimiser step {step} (epoch {epoch}); {seen}training stopped, "
        f"{where}. Lower the learning rate, use fp32 (pretrain.mixed_precision=no) or check the "
        "data."
    )


def raise_if_nonfinite(
    loss: Any, accelerator: Any, step: int, epoch: int, last_checkpoint: str | None
) -> None:
    """Raise NonFiniteLossError if ``loss`` is NaN/inf on any process (all processes agree);
    ``step`` and ``epoch`` are 1-based, for the message. This reads the loss on the host (a
    sync); the engine uses :class:`NonFiniteWatch` instead."""
    import torch

    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() != 0:
        raise NonFiniteLossError(nonfinite_message(step, epoch, last_checkpoint))


class NonFiniteWatch:
    """The non-finite-loss guard kept on the device (see the module docstring).

    ``observe(loss, step)`` each micro-step (``step``: the 1-based optimiser step it belongs
    to) only queues device work; ``first_bad(accelerator)`` reads the first bad step (0: none;
    the earliest over all processes, which must all call it together);
    ``raise_if_bad(...)`` raises :class:`NonFiniteLossError` when there is one.
    """

    def __init__(self, device: Any) -> None:
        import torch

        self._first = torch.zeros((), dtype=torch.int64, device=device)

    def observe(self, loss: Any, step: int) -> None:
        import torch

        bad = ~torch.isfinite(loss.detach())
        # `step` is a Python number: passed to the kernel by value, no copy to the device.
        self._first = torch.where(bad & (self._first == 0), step, self._first)

    def first_bad(self, accelerator: Any) -> int:
        first = self._first.reshape(1)
        if accelerator.num_processes > 1:
            steps = accelerator.gather(first)
            steps = steps[steps > 0]
            return int(steps.min()) if steps.numel() else 0
        return int(first.item())

    def raise_if_bad(
        self,
        accelerator: Any,
        steps_per_epoch: int,
        last_checkpoint: str | None,
        now_step: int,
    ) -> None:
        """Read the flag (a host sync) and raise if a non-finite loss was seen; ``now_step``:
        the optimiser steps done so far, for the message."""
        step = self.first_bad(accelerator)
        if step:
            epoch = (step - 1) // max(steps_per_epoch, 1) + 1
            raise NonFiniteLossError(nonfinite_message(step, epoch, last_checkpoint, now_step))


def collapse_warnings(
    spread: float | None, sigma2_student: float | None, logvar_min: float | None
) -> list[str]:
    """Warnings (possibly none) for an epoch's mean embedding spread and student variance."""
    out = []
    if spread is not None and math.isfinite(spread) and spread < COLLAPSE_SPREAD:
        out.append(
            f"representation collapse: embedding spread {spread:.2e} < {COLLAPSE_SPREAD} "
            "(std of L2-normalised embeddings across the batch, times sqrt(dim))"
        )
    if sigma2_student is not None and logvar_min is not None:
        floor = math.exp(logvar_min)
        if sigma2_student < SIGMA2_FLOOR_FACTOR * floor:
            out.append(
                f"variance collapse: mean student sigma^2 {sigma2_student:.2e} is within a "
                f"factor {SIGMA2_FLOOR_FACTOR:g} of its lower bound exp(logvar_min) = {floor:.2e}"
            )
    return out


def epoch_warnings(row: Mapping[str, Any], logvar_bounds: tuple[float, float] | None) -> list[str]:
    """:func:`collapse_warnings` for one epoch's history row (``z_spread``, ``sigma2_student``)
    and the method's log-variance bounds (``Method.logvar_bounds``; None: no variance check)."""
    logvar_min = logvar_bounds[0] if logvar_bounds is not None else None
    return collapse_warnings(row.get("z_spread"), row.get("sigma2_student"), logvar_min)
