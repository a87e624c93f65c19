"""Assembling what a pretraining run trains, for a validated :class:`~vssl.train.plan.Plan`.

- :func:`build_method`: the method (backbone + heads) for a dataset's image shape, freshly
  initialised (also how :func:`vssl.train.checkpoint.method_from_checkpoint` rebuilds one);
- :func:`online_probe` and :class:`TrainModule`: solo-learn's online linear probe beside the
  method, in one module so that one DDP wrapper averages the gradients of both;
- :func:`build_optimisers`: the method's optimiser (``lr = base_lr * B / 256``) with its
  per-iteration warm-up + cosine schedule, and the probe's own SGD;
- :func:`grad_clip` and :func:`clip_max_norm`: the parameters and max norm of the method's
  gradient clipping;
- :func:`use_channels_last` and :func:`compile_train_module`: the memory layout and
  ``torch.compile`` of the training module (``pretrain.channels_last``, ``pretrain.compile``);
- :func:`data_spec_dict`: the dataset description stored in the checkpoint (``data_spec``).

Everything here consumes the global RNG in a fixed order (method, then probe): the caller seeds
it first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger("vssl.train")

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

    from vssl.config import Params
    from vssl.methods import Method
    from vssl.train.plan import Plan


def data_spec_dict(spec: Any) -> dict[str, Any]:
    """The checkpoint's ``data_spec``: what rebuilding the model and its inputs needs of a
    :class:`vssl.data.DatasetSpec` (name, image_size, channels, classes, num_classes, mean, std,
    preset)."""
    return {
        "name": spec.name,
        "image_size": spec.image_size,
        "channels": spec.channels,
        "classes": list(spec.classes),
        "num_classes": spec.num_classes,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "preset": spec.preset,
    }


def build_method(method: str, params: Params, data_spec: Mapping[str, Any]) -> tuple[Method, int]:
    """``(Method, feature_dim)`` freshly initialised for ``method`` on a dataset described by
    ``data_spec`` (``channels``, ``image_size``), with ``params.backbone``."""
    from vssl.methods import build
    from vssl.models import build_backbone

    bb = params.backbone
    backbone, feature_dim = build_backbone(
        bb.name,
        width=bb.width,
        in_channels=int(data_spec["channels"]),
        image_size=int(data_spec["image_size"]),
        cifar_stem=bb.cifar_stem,
    )
    return build(method, params.method_cfg(method), backbone, feature_dim), feature_dim


class TrainModule(nn.Module):
    """The method plus the online probe in one module, so one DDP wrapper averages both.

    ``forward(x1, x2, y)`` returns the method's dict plus ``probe_loss``: the cross-entropy of
    ``probe(feats)`` against the labels of both views (labels < 0, STL-10's unlabeled images,
    are ignored: ``sum_i CE_i [y_i >= 0] / max(1, #labeled)``). ``feats`` are detached, so the
    probe never shapes the representation.
    """

    def __init__(self, method: nn.Module, probe: nn.Module) -> None:
        super().__init__()
        self.method, self.probe = method, probe

    def forward(self, x1: Tensor, x2: Tensor, y: Tensor) -> dict[str, Tensor]:
        out = self.method(x1, x2)
        yy = torch.cat([y, y])
        logits = self.probe(out["feats"].detach().float())
        ce = F.cross_entropy(logits, yy.clamp(min=0), reduction="none")
        labeled = (yy >= 0).float()
        out["probe_loss"] = (ce * labeled).sum() / labeled.sum().clamp(min=1.0)
        return out


def online_probe(feature_dim: int, num_classes: int) -> nn.Module:
    """The online linear probe: ``BatchNorm1d(affine=False)`` then ``Linear``.

    The parameter-free BatchNorm (as in MAE's linear probe) standardises the features, whose
    scale drifts during pretraining; without it SGD at lr 0.1 oscillates on raw ResNet
    features. In eval mode it is a fixed affine map, so the probe stays linear.
    """
    return nn.Sequential(
        nn.BatchNorm1d(feature_dim, affine=False), nn.Linear(feature_dim, num_classes)
    )


def build_train_module(plan: Plan, *, sync_batchnorm: bool = False) -> TrainModule:
    """The plan's method (its BatchNorms synchronised across processes if ``sync_batchnorm``)
    and a fresh online probe, in one :class:`TrainModule`."""
    job = plan.job
    method, feature_dim = build_method(job.method, job.params, data_spec_dict(plan.spec))
    if sync_batchnorm:
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return TrainModule(method, online_probe(feature_dim, plan.spec.num_classes))


@dataclass
class Optimisers:
    """The method's optimiser and learning-rate schedule, and the online probe's optimiser."""

    optimizer: Optimizer
    scheduler: LRScheduler
    probe_optimizer: Optimizer


def build_optimisers(plan: Plan, module: TrainModule) -> Optimisers:
    """The plan's optimiser (``pretrain.optimizer`` with the method's overrides) at
    ``lr = base_lr * batch_size / 256`` over the method's trainable parameters, its schedule
    (warm-up of ``warmup_epochs``, cosine to ``min_lr`` over every step of the run), and SGD
    (momentum 0.9, lr ``pretrain.online_probe_lr``, no weight decay) for the probe."""
    from vssl.train.optim import build_optimizer, build_scheduler, scaled_lr

    oc, pc = plan.opt_cfg, plan.job.params.pretrain
    optimizer = build_optimizer(
        oc["optimizer"],
        module.method,
        lr=scaled_lr(oc["base_lr"], pc.batch_size),
        weight_decay=oc["weight_decay"],
        momentum=oc["momentum"],
        lars_eta=oc["lars_eta"],
    )
    warmup = round(oc["warmup_epochs"] * plan.steps_per_epoch)
    total_steps = plan.steps_per_epoch * plan.total_epochs
    scheduler = build_scheduler(optimizer, warmup, total_steps, oc["min_lr"])
    probe_optimizer = torch.optim.SGD(
        module.probe.parameters(), lr=pc.online_probe_lr, momentum=0.9, weight_decay=0.0
    )
    return Optimisers(optimizer, scheduler, probe_optimizer)


def clip_max_norm(opt_cfg: Mapping[str, Any]) -> float:
    """The max gradient norm of a resolved optimiser config (``Params.optimizer_cfg``):
    ``grad_clip_norm``, or ``inf`` where none is set (the norm is still measured, for
    history.csv's ``grad_norm``)."""
    max_norm = opt_cfg.get("grad_clip_norm")
    return math.inf if max_norm is None else float(max_norm)


def grad_clip(plan: Plan, method: nn.Module) -> tuple[list[Tensor], float]:
    """``(parameters, max_norm)`` of the method's gradient clipping (:func:`clip_max_norm`).
    Only the method's parameters: the probe has its own loss."""
    return [p for p in method.parameters() if p.requires_grad], clip_max_norm(plan.opt_cfg)


# oneDNN's channels-last backward of a 1x1 stride-2 convolution (ResNet's downsample) with
# fewer than 16 input channels crashes the process (SIGSEGV, heap corruption) on maps of 56 px
# and more (torch 2.14.1, AVX-512 CPU; fine at 32 px and at 16 channels): a width-4 or width-8
# ResNet on ImageNet-sized images. `auto` keeps the contiguous layout there on the CPU.
CPU_NHWC_MIN_WIDTH = 16


def use_channels_last(
    setting: str | bool,
    device_type: str,
    backbone: str,
    width: int | None = None,
    image_size: int | None = None,
) -> bool:
    """``pretrain.channels_last`` for a device: ``auto`` is on for CUDA (tensor cores read NHWC
    convolutions directly) and on CPU too, where the engine measured it faster (oneDNN's
    convolutions prefer NHWC: 1.16-1.38x the training images/s at width 16, batch 256;
    docs/benchmarks.md, "Engine throughput after the GPU work"), except for a CPU backbone
    narrower than :data:`CPU_NHWC_MIN_WIDTH` on images larger than 32 px (a oneDNN crash);
    off on other devices. Only CNN backbones (all of ours) have a layout."""
    if not backbone.startswith("resnet"):
        return False
    if setting == "auto":
        if (
            device_type == "cpu"
            and width is not None
            and width < CPU_NHWC_MIN_WIDTH
            and (image_size or 0) > 32
        ):
            return False
        return device_type in ("cuda", "cpu")
    return bool(setting)


def use_compile(setting: str | bool, device_type: str) -> bool:
    """``pretrain.compile`` for a device: ``auto`` compiles on CUDA only (on CPU compiling costs
    about a minute per run and keeps the eager numbers that ``--resume`` reproduces exactly)."""
    if setting == "auto":
        return device_type == "cuda"
    return bool(setting)


def resolve_compile_mode(setting: str, device_type: str, num_processes: int) -> str:
    """``pretrain.compile_mode`` for a run: ``auto`` is ``reduce-overhead`` (the compiled step
    replayed as CUDA graphs) on a single CUDA device, and torch.compile's ``default`` elsewhere.

    Why: the compiled step is launch-bound (about 1,000 launches for 11 ms of kernels at batch
    256); on an H100 CUDA graphs gave 1.60x the default mode's images/s (BYOL, batch 512, one
    session) and 1.72x / 2.47x (BYOL / VSSL, batch 256, against an earlier session's runs;
    docs/benchmarks.md, "CUDA graphs on one H100"). Several
    processes (DDP) keep ``default``: DDP's bucketed all-reduce splits the graphs and that
    combination is unmeasured here. CUDA graphs do not exist on other devices."""
    if setting != "auto":
        return setting
    return "reduce-overhead" if device_type == "cuda" and num_processes == 1 else "default"


def compile_train_module(module: nn.Module, mode: str = "default") -> bool:
    """``torch.compile`` the training module in place (``nn.Module.compile``: its state dict,
    submodules and checkpoints are unchanged), in ``mode`` (``pretrain.compile_mode``).
    Graceful: if compiling is unavailable, or a graph fails to compile at its first call, that
    code runs eagerly with a warning (dynamo's ``suppress_errors``). Returns whether the module
    was compiled."""
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        module.compile(mode=None if mode == "default" else mode)
    except Exception as e:  # an unsupported platform or Python: run eagerly
        log.warning("torch.compile is unavailable (%s: %s); training eagerly", type(e).__name__, e)
        return False
    return True
