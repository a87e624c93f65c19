"""Losses, one small documented function per file (like lightly's ``lightly/loss``).

VSSL terms (inputs (B, d), outputs (B,) per sample, in nats): :func:`gaussian_kl`,
:func:`cosine_kl`, :func:`gaussian_nll`, :func:`cosine_nll`. Baselines (scalar outputs):
:func:`negative_cosine` (BYOL), :func:`infonce` (MoCo v3), :func:`ntxent` (SimCLR),
:func:`barlow_twins_loss` (Barlow Twins).
"""

from vssl.losses.barlow_twins import barlow_twins_loss
from vssl.losses.cosine_kl import cosine_kl
from vssl.losses.cosine_nll import cosine_nll
from vssl.losses.gaussian_kl import gaussian_kl
from vssl.losses.gaussian_nll import gaussian_nll
from vssl.losses.infonce import infonce
from vssl.losses.negative_cosine import negative_cosine
from vssl.losses.ntxent import ntxent

__all__ = [
    "barlow_twins_loss",
    "cosine_kl",
    "cosine_nll",
    "gaussian_kl",
    "gaussian_nll",
    "infonce",
    "negative_cosine",
    "ntxent",
]
