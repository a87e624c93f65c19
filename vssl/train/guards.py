"""Run guards: a non-finite loss stops the run; collapse of the representation or of VSSL's
variances raises a logged warning.

Thresholds (documented here, used by the engine once per epoch on the epoch means):

- ``COLLAPSE_SPREAD = 0.01``: :func:`vssl.train.monitor.embedding_spread` of the student
  embeddings ``z`` (``sqrt(k) * mean_j std_i(z_i/|z_i|)_j``: about 1 when directions are spread
  over the sphere, 0 when every image maps to one direction) below 1% of the spread value.
  For k = 256 that is a per-dimension std of 6e-4.
- ``SIGMA2_FLOOR_FACTOR = 2``: VSSL's mean student variance within a factor 2 of its lower bound
  ``exp(logvar_min)``: the posterior has shrunk to the clamp and the KL/likelihood balance is
  gone (the mean is dominated by large values, so this means nearly every dimension is there).
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger("vssl.train")

COLLAPSE_SPREAD = 0.01
SIGMA2_FLOOR_FACTOR = 2.0


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


def nonfinite_message(step: int, epoch: int, last_checkpoint: str | None) -> str:
    where = (
        f"the last good checkpoint is {last_checkpoint}"
        if last_checkpoint
        else "no checkpoint was written yet"
    )
    return (
        f"non-finite loss at optimiser step {step} (epoch {epoch}); training stopped, {where}. "
        "Lower the learning rate, use fp32 (pretrain.mixed_precision=no) or check the data."
    )


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
