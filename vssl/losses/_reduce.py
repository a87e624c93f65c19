"""Combining per-coordinate terms over the d latent coordinates."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Reduction = Literal["sum", "mean"]
REDUCTIONS: tuple[str, ...] = ("sum", "mean")


def over_coordinates(terms: Tensor, reduction: Reduction) -> Tensor:
    """(B, d) -> (B,): ``sum`` (nats per sample) or ``mean`` (nats per coordinate)."""
    if reduction == "sum":
        return terms.sum(dim=-1)
    if reduction == "mean":
        return terms.mean(dim=-1)
    raise ValueError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
