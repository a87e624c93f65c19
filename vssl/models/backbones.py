"""ResNet backbones from torchvision with a CIFAR stem and a width multiplier.

The network is torchvision's own ``ResNet`` (its ``BasicBlock``/``Bottleneck`` and
``_make_layer``), constructed with stage widths ``width * (1, 2, 4, 8)`` instead of the hard-coded
``64 * (1, 2, 4, 8)``. ``width_per_group`` is not the right knob for that: it only changes the
inner width of bottleneck blocks, and basic blocks reject it. ``fc`` is ``Identity``, so the
module maps (B, C, H, W) to pooled features (B, feature_dim) with
``feature_dim = 8 * width * block.expansion`` (512 for ResNet-18 at width 64, 2048 for ResNet-50).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

# name -> (block class, blocks per stage), as torchvision's resnet18/resnet50 builders use.
_ARCHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}
KNOWN_BACKBONES = tuple(_ARCHS)

# Images up to this size get the CIFAR stem (a 7x7/2 conv + max-pool would leave 1x1 maps).
CIFAR_STEM_MAX_SIZE = 64


class WideResNet(ResNet):
    """torchvision ``ResNet`` with base width ``width``, ``in_channels`` inputs and a choice of stem.

    CIFAR stem: ``conv1 = Conv2d(in_channels, width, 3, stride=1, padding=1)`` and no max-pool
    (as in SimCLR's CIFAR ResNet). ImageNet stem: torchvision's 7x7 stride-2 conv + 3x3 max-pool.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        width: int = 64,
        in_channels: int = 3,
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        # Skip ResNet.__init__ (it would build the 64-wide network first) but set every attribute
        # its _make_layer and forward rely on.
        nn.Module.__init__(self)
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # keeps Bottleneck's inner width equal to its planes
        if cifar_stem:
            self.conv1 = nn.Conv2d(
                in_channels, width, kernel_size=3, stride=1, padding=1, bias=False
            )
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(
                in_channels, width, kernel_size=7, stride=2, padding=3, bias=False
            )
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = self._norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        self.feature_dim = 8 * width * block.expansion

        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)


def build_backbone(
    name: str,
    width: int = 64,
    in_channels: int = 3,
    image_size: int = 32,
    cifar_stem: bool | Literal["auto"] = "auto",
) -> tuple[nn.Module, int]:
    """Build a ResNet backbone; returns ``(module, feature_dim)``.

    ``cifar_stem="auto"`` uses the CIFAR stem for ``image_size <= 64``. The module maps
    (B, in_channels, H, W) float images to (B, feature_dim) features (``fc`` is ``Identity``).
    Unknown names raise ``ValueError`` listing the known ones.
    """
    if name not in _ARCHS:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(KNOWN_BACKBONES)}")
    if width <= 0 or in_channels <= 0 or image_size <= 0:
        raise ValueError(
            f"backbone width, in_channels and image_size must be positive, got "
            f"width={width}, in_channels={in_channels}, image_size={image_size}"
        )
    if cifar_stem == "auto":
        cifar_stem = image_size <= CIFAR_STEM_MAX_SIZE
    elif not isinstance(cifar_stem, bool):
        raise ValueError(f"cifar_stem must be True, False or 'auto', got {cifar_stem!r}")
    block, layers = _ARCHS[name]
    net = WideResNet(block, layers, width=width, in_channels=in_channels, cifar_stem=cifar_stem)
    return net, net.feature_dim
