"""Batched two-view augmentation on the accelerator with kornia (no per-sample Python loop)."""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
import torch.nn as nn
from torch import Tensor

from vssl.augment.cpu import check_stats
from vssl.augment.recipes import Recipe, ViewRecipe, view_ops


def _op(name: str, a: dict) -> nn.Module:
    if name == "crop":
        # align_corners=False matches torch/torchvision's bilinear resize.
        return K.RandomResizedCrop(
            (a["size"], a["size"]), scale=a["scale"], ratio=a["ratio"], align_corners=False
        )
    if name == "hflip":
        return K.RandomHorizontalFlip(p=a["p"])
    if name == "jitter":
        # kornia's ColorJitter (not ColorJiggle) follows torchvision's definitions.
        return K.ColorJitter(a["brightness"], a["contrast"], a["saturation"], a["hue"], p=a["p"])
    if name == "grayscale":
        return K.RandomGrayscale(p=a["p"])
    if name == "blur":
        return K.RandomGaussianBlur(a["kernel_size"], a["sigma"], border_type="reflect", p=a["p"])
    if name == "solarize":
        # thresholds=0 -> threshold sampled from (0.5 - 0, 0.5 + 0); shift it to ours.
        t = a["threshold"]
        return K.RandomSolarize(thresholds=(t, t), additions=0.0, p=a["p"])
    raise ValueError(f"unknown augmentation op {name!r}")


def build_view(recipe: Recipe, view: ViewRecipe) -> nn.Sequential:
    """float (B, C, H, W) in [0, 1] -> augmented (B, C, size, size), parameters per sample."""
    return nn.Sequential(*[_op(n, a) for n, a in view_ops(recipe, view)])


class GPUTwoViewAugment(nn.Module):
    """``module(x_uint8) -> (v1, v2)``: uint8 (B, C, H, W) on any device to two normalised
    float views (B, C, size, size); same recipe and op parameters as :class:`TwoViewTransform`.
    """

    def __init__(self, recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        check_stats(recipe, mean, std)
        self.recipe = recipe
        self.view1 = build_view(recipe, recipe.view1)
        self.view2 = build_view(recipe, recipe.view2)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @torch.no_grad()
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != self.recipe.channels:
            raise TypeError(
                f"GPUTwoViewAugment expects uint8 (B, {self.recipe.channels}, H, W), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        x = x.float().div_(255.0)
        v1 = (self.view1(x) - self.mean) / self.std
        v2 = (self.view2(x) - self.mean) / self.std
        return v1, v2
