"""BYOL's asymmetric two-view augmentation recipe, as data, with per-dataset presets.

A :class:`Recipe` holds one :class:`ViewRecipe` per view. :func:`view_ops` turns a view into
the ordered list of operations with their parameters; the CPU (torchvision v2) and the batched
(kornia) implementations are both built from that list, so they apply the same operations with
the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ViewRecipe:
    """One view: random resized crop, flip, colour jitter, grayscale, blur, solarisation.

    Probabilities are per sample. Colour operations are dropped for 1-channel recipes.
    ``solarize_threshold`` is on the [0, 1] scale (pixels >= threshold become 1 - pixel).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5


@dataclass(frozen=True)
class Recipe:
    """A two-view recipe at ``size`` px for ``channels``-channel images.

    ``blur_kernel``: odd Gaussian kernel size (about 10% of the image side, BYOL's 23 at 224 px).
    ``eval_resize``: the shorter side before the centre crop to ``size`` for evaluation.
    """

    name: str
    size: int
    channels: int = 3
    eval_resize: int | None = None
    blur_kernel: int | None = None
    view1: ViewRecipe = field(default_factory=ViewRecipe)
    view2: ViewRecipe = field(default_factory=ViewRecipe)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"recipe {self.name!r}: channels must be 1 or 3, got {self.channels}")
        if self.eval_resize is None:
            object.__setattr__(self, "eval_resize", self.size)
        if self.blur_kernel is None:
            object.__setattr__(self, "blur_kernel", int(0.1 * self.size) // 2 * 2 + 1)
        if self.blur_kernel % 2 != 1:
            raise ValueError(
                f"recipe {self.name!r}: blur_kernel must be odd, got {self.blur_kernel}"
            )

    @property
    def views(self) -> tuple[ViewRecipe, ViewRecipe]:
        return (self.view1, self.view2)


def view_ops(recipe: Recipe, view: ViewRecipe) -> list[tuple[str, dict[str, Any]]]:
    """The ordered operations of one view, ``[(name, params), ...]``; ops with p = 0 are left out.

    Order (BYOL): crop, hflip, jitter, grayscale, blur, solarize (then normalise).
    """
    ops: list[tuple[str, dict[str, Any]]] = [
        ("crop", {"size": recipe.size, "scale": view.crop_scale, "ratio": view.crop_ratio})
    ]
    if view.hflip_p > 0:
        ops.append(("hflip", {"p": view.hflip_p}))
    if recipe.channels == 3:
        strengths = (view.brightness, view.contrast, view.saturation, view.hue)
        if view.jitter_p > 0 and any(s > 0 for s in strengths):
            b, c, s, h = strengths
            ops.append(
                (
                    "jitter",
                    {"p": view.jitter_p, "brightness": b, "contrast": c, "saturation": s, "hue": h},
                )
            )
        if view.grayscale_p > 0:
            ops.append(("grayscale", {"p": view.grayscale_p}))
    if view.blur_p > 0:
        ops.append(
            (
                "blur",
                {"p": view.blur_p, "kernel_size": recipe.blur_kernel, "sigma": view.blur_sigma},
            )
        )
    if view.solarize_p > 0:
        ops.append(("solarize", {"p": view.solarize_p, "threshold": view.solarize_threshold}))
    return ops


# BYOL (Grill et al., 2020, Table 6): view 1 always blurred, never solarised; view 2 blurred
# with p = 0.1 and solarised with p = 0.2.
_BYOL_V1 = ViewRecipe(blur_p=1.0, solarize_p=0.0)
_BYOL_V2 = ViewRecipe(blur_p=0.1, solarize_p=0.2)
# solo-learn's CIFAR configs (augmentations/asymmetric.yaml): no blur at 32 px, crop scale
# (0.08, 1), solarisation 0.0 / 0.2.
_CIFAR_V1 = ViewRecipe(blur_p=0.0, solarize_p=0.0)
_CIFAR_V2 = ViewRecipe(blur_p=0.0, solarize_p=0.2)

PRESETS: dict[str, Recipe] = {
    "cifar": Recipe("cifar", size=32, view1=_CIFAR_V1, view2=_CIFAR_V2),
    "stl": Recipe("stl", size=96, view1=_BYOL_V1, view2=_BYOL_V2),
    "imagenet": Recipe("imagenet", size=224, eval_resize=256, view1=_BYOL_V1, view2=_BYOL_V2),
    # Fashion-MNIST: 28 px, 1 channel, so no colour ops; otherwise the CIFAR recipe.
    "grayscale": Recipe("grayscale", size=28, channels=1, view1=_CIFAR_V1, view2=_CIFAR_V2),
}


def get_preset(name: str) -> Recipe:
    """The named recipe; unknown names raise ``ValueError`` listing the known presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
