"""The torch device evaluation runs on."""

from __future__ import annotations

import torch

from vssl.config import ConfigError


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else the accelerator when there is one (CUDA, then MPS), else CPU.

    A malformed name or an accelerator this machine lacks is a ``ConfigError`` here, before any
    data is read, instead of a failure on the first tensor moved there."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ConfigError(f"--device {name!r}: not a torch device ({e})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {name!r}: CUDA is not available on this machine")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and (mps is None or not mps.is_available()):
            raise ConfigError(f"--device {name!r}: MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
