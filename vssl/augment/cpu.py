"""Per-sample two-view augmentation on CPU with torchvision transforms v2 (DataLoader workers):
the whole recipe (:class:`TwoViewTransform`), or only its geometry (:class:`TwoViewCrops`, for
image folders whose photometric ops run batched on the device)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torchvision.transforms import v2

from vssl.augment.recipes import Recipe, ViewRecipe, view_ops


def _op(name: str, a: dict) -> nn.Module:
    if name == "crop":
        return v2.RandomResizedCrop(a["size"], scale=a["scale"], ratio=a["ratio"], antialias=True)
    if name == "hflip":
        return v2.RandomHorizontalFlip(p=a["p"])
    if name == "jitter":
        jitter = v2.ColorJitter(a["brightness"], a["contrast"], a["saturation"], a["hue"])
        return v2.RandomApply([jitter], p=a["p"])
    if name == "grayscale":
        return v2.RandomGrayscale(p=a["p"])
    if name == "blur":
        return v2.RandomApply([v2.GaussianBlur(a["kernel_size"], sigma=a["sigma"])], p=a["p"])
    if name == "solarize":
        return v2.RandomSolarize(threshold=a["threshold"], p=a["p"])
    raise ValueError(f"unknown augmentation op {name!r}")


def build_view(
    recipe: Recipe, view: ViewRecipe, mean: Sequence[float], std: Sequence[float]
) -> v2.Compose:
    """uint8 (C, H, W) -> float normalised (C, size, size) for one view.

    The crop runs on uint8 (cheaper on large images); everything after it on float in [0, 1],
    like the batched path.
    """
    ops = [_op(n, a) for n, a in view_ops(recipe, view)]
    ops.insert(1, v2.ToDtype(torch.float32, scale=True))
    ops.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(ops)


class _TwoViews:
    """``transform(img) -> (view1(img), view2(img))`` for one uint8 (C, H, W) tensor."""

    recipe: Recipe
    view1: v2.Compose
    view2: v2.Compose

    def __call__(self, img: Tensor) -> tuple[Tensor, Tensor]:
        if img.dtype != torch.uint8 or img.dim() != 3:
            raise TypeError(
                f"{type(self).__name__} expects a uint8 (C, H, W) tensor, got {img.dtype} "
                f"{tuple(img.shape)}"
            )
        return self.view1(img), self.view2(img)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.recipe.name}:\n view1={self.view1}\n view2={self.view2})"
        )


class TwoViewTransform(_TwoViews):
    """``transform(img) -> (v1, v2)``: both views of one uint8 (C, H, W) tensor, normalised."""

    def __init__(self, recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> None:
        check_stats(recipe, mean, std)
        self.recipe = recipe
        self.view1 = build_view(recipe, recipe.view1, mean, std)
        self.view2 = build_view(recipe, recipe.view2, mean, std)


GEOMETRIC_OPS = ("crop", "hflip")


class TwoViewCrops(_TwoViews):
    """``transform(img) -> (c1, c2)``: the geometric part of each view (random resized crop,
    horizontal flip) of one uint8 (C, H, W) tensor, as uint8 (C, size, size).

    The "split" path for image folders: decoding and cropping stay per sample in the DataLoader
    workers (the crop brings every image to one size, so they batch), and
    :meth:`vssl.augment.TensorTwoViewAugment.photometric` applies the rest of the recipe to the
    batch on the device. The ops are :class:`TwoViewTransform`'s own, built from the same
    :func:`~vssl.augment.recipes.view_ops`, on uint8 as there (its crop runs before the float
    conversion; the flip commutes with it).
    """

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.view1, self.view2 = (
            v2.Compose([_op(n, a) for n, a in view_ops(recipe, view) if n in GEOMETRIC_OPS])
            for view in recipe.views
        )


def eval_transform(recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 (C, H, W) -> float normalised (C, size, size): resize the shorter side to
    ``recipe.eval_resize``, centre-crop to ``recipe.size``, scale to [0, 1], normalise."""
    check_stats(recipe, mean, std)
    return v2.Compose(
        [
            v2.Resize(recipe.eval_resize, antialias=True),
            v2.CenterCrop(recipe.size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def check_stats(recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != recipe.channels or len(std) != recipe.channels:
        raise ValueError(
            f"recipe {recipe.name!r} has {recipe.channels} channel(s) but mean/std have "
            f"{len(mean)}/{len(std)} values"
        )
