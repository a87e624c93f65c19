"""Backbones (torchvision ResNet, CIFAR stem, width), projection heads and EMA teachers."""

from vssl.models.backbones import KNOWN_BACKBONES, WideResNet, build_backbone
from vssl.models.ema import cosine_tau, ema_update, make_teacher
from vssl.models.heads import MLP, GaussianHead

__all__ = [
    "KNOWN_BACKBONES",
    "MLP",
    "GaussianHead",
    "WideResNet",
    "build_backbone",
    "cosine_tau",
    "ema_update",
    "make_teacher",
]
