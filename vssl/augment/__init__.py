"""BYOL's two-view augmentations: per-sample on CPU (torchvision v2) and batched (plain tensor
ops, :mod:`vssl.augment.tensor`, the engine's; kornia, :mod:`vssl.augment.gpu`)."""

from vssl.augment.cpu import TwoViewTransform, eval_transform
from vssl.augment.gpu import GPUTwoViewAugment
from vssl.augment.recipes import PRESETS, Recipe, ViewRecipe, get_preset, view_ops
from vssl.augment.tensor import TensorTwoViewAugment

__all__ = [
    "PRESETS",
    "GPUTwoViewAugment",
    "Recipe",
    "TensorTwoViewAugment",
    "TwoViewTransform",
    "ViewRecipe",
    "eval_transform",
    "get_preset",
    "view_ops",
]
