"""BYOL's two-view augmentations: per-sample on CPU (torchvision v2) and batched (kornia)."""

from vssl.augment.cpu import TwoViewTransform, eval_transform
from vssl.augment.gpu import GPUTwoViewAugment
from vssl.augment.recipes import PRESETS, Recipe, ViewRecipe, get_preset, view_ops

__all__ = [
    "PRESETS",
    "GPUTwoViewAugment",
    "Recipe",
    "TwoViewTransform",
    "ViewRecipe",
    "eval_transform",
    "get_preset",
    "view_ops",
]
