"""Self-supervised methods behind one interface (:class:`Method`), one class per file.

``build(name, cfg, backbone, feature_dim)`` builds a method by registry name with its config
dict (``Params.method_cfg(name)``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn

from vssl.methods.barlow_twins import BarlowTwins
from vssl.methods.base import Method, MomentumMethod
from vssl.methods.byol import BYOL
from vssl.methods.mocov3 import MoCoV3
from vssl.methods.random import RandomInit
from vssl.methods.simclr import SimCLR
from vssl.methods.vssl import VSSL

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (VSSL, BYOL, MoCoV3, SimCLR, BarlowTwins, RandomInit)
}


def build(name: str, cfg: dict[str, Any], backbone: nn.Module, feature_dim: int) -> Method:
    """Build method ``name`` around ``backbone`` (output (B, feature_dim)) with its config dict.

    Raises ``ValueError`` for an unknown name (listing the known ones) or an unknown config key.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    cls = METHODS[name]
    cfg = {k: v for k, v in (cfg or {}).items() if k != "optimizer"}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "backbone", "feature_dim"}
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise ValueError(
            f"method {name!r}: unknown config keys {unknown}; accepted: {sorted(accepted)}"
        )
    return cls(backbone, feature_dim, **cfg)


__all__ = [
    "METHODS",
    "BYOL",
    "BarlowTwins",
    "Method",
    "MoCoV3",
    "MomentumMethod",
    "RandomInit",
    "SimCLR",
    "VSSL",
    "build",
]
