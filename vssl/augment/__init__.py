"""BYOL's two-view augmentations: per-sample on CPU (torchvision v2), batched (plain tensor
ops, :mod:`vssl.augment.tensor`, the engine's; kornia, :mod:`vssl.augment.gpu`), or split
between the two (crops per sample, the rest batched; image folders)."""

from vssl.augment.cpu import TwoViewCrops, TwoViewTransform, eval_transform
from vssl.augment.gpu import GPUTwoViewAugment
from vssl.augment.recipes import PRESETS, Recipe, ViewRecipe, get_preset, view_ops
from vssl.augment.tensor import TensorTwoViewAugment

__all__ = [
    "PRESETS",
    "GPUTwoViewAugment",
    "Recipe",
    "TensorTwoViewAugment",
    "TwoViewCrops",
    "TwoViewTransform",
    "ViewRecipe",
    "eval_transform",
    "get_preset",
    "view_ops",
]
