"""Planning a pretraining job: every check before anything expensive, then the data.

:func:`plan_pretraining` turns a :class:`PretrainJob` into a validated :class:`Plan`, cheapest
checks first (method, dataset and augmentation preset, epochs, the batch split across processes,
mixed precision, existing outputs and the checkpoint to resume), then loads the data (which is
what proves its files are there). Errors are ``ConfigError`` subclasses (the CLI exits 2) and
leave nothing behind: no model is built and no MLflow run started before the plan exists.

Also here: the training fingerprint compared on ``--resume`` (:func:`training_fingerprint`,
:func:`check_resumable`) and the process state Accelerate launches into (:func:`use_cpu`,
:func:`process_state`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vssl.config import KNOWN_METHODS, ConfigError, Params
from vssl.train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from vssl.train.records import OUTPUT_NAMES

# Params keys that do not change what is trained (allowed to differ on --resume).
_NON_TRAINING_KEYS = {
    "pretrain": {"epochs", "epochs_by_dataset", "checkpoint_every", "log_every", "knn_every"},
    "data": {"num_workers"},
}


@dataclass
class PretrainJob:
    """One pretraining job. ``stop_after``: stop (checkpointed, resumable) after that many
    completed epochs while keeping the schedule of ``epochs`` (simulates a preemption)."""

    params: Params
    dataset: str
    method: str
    seed: int
    out_dir: Path
    variant: str = ""  # the grid entry (a variant's name; "" -> the method's)
    epochs: int | None = None
    resume: bool = False
    overwrite: bool = False
    stop_after: int | None = None
    show_progress: bool | None = None  # None: a tqdm bar when stderr is a terminal

    def __post_init__(self) -> None:
        self.variant = self.variant or self.method


@dataclass
class Plan:
    """A validated job: everything :func:`plan_pretraining` checked or loaded.

    ``train``, ``test`` and ``knn_train`` are the data sources: ``{"images": uint8 (N, C, H, W),
    "labels": (N,)[, "transform": eval transform]}`` for in-memory datasets, else ``{"dataset":
    Dataset[, "num_workers": int]}``. ``micro_batch`` is one process's share of one accumulation
    step; ``resume_ckpt`` the loaded checkpoint to continue (None: start fresh).
    """

    job: PretrainJob
    spec: Any
    recipe: Any
    total_epochs: int
    opt_cfg: dict[str, Any]
    world: int
    accum: int
    micro_batch: int
    gpu_augment: bool
    mixed_precision: str
    train: dict[str, Any]
    test: dict[str, Any]
    knn_train: dict[str, Any]
    n_train: int
    steps_per_epoch: int
    fingerprint: dict[str, Any]
    resume_ckpt: dict[str, Any] | None = None


def use_cpu() -> bool:
    """CPU mode: asked for (``accelerate launch --cpu`` sets ACCELERATE_USE_CPU), or no CUDA in a
    multi-process launch (torchrun); Accelerate only forms a gloo group on CPU when told so."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state() -> Any:
    """This process's Accelerate ``PartialState`` (rank, world size, device), in CPU mode where
    :func:`use_cpu` says so."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


def training_fingerprint(params: Params, method: str, dataset: str) -> dict[str, Any]:
    """The flattened part of the config that determines the trained weights (compared on
    ``--resume``): backbone, pretrain (minus epochs and logging cadence), data subsets, the
    method's hyperparameters and the npz dataset's declaration."""
    from vssl.tracking import flatten

    d = params.to_dict()
    fp: dict[str, Any] = {"backbone": d["backbone"], "methods": {method: d["methods"][method]}}
    for section in ("pretrain", "data"):
        skip = _NON_TRAINING_KEYS[section]
        fp[section] = {k: v for k, v in d[section].items() if k not in skip}
    if dataset in d["datasets"]:
        fp["datasets"] = {dataset: d["datasets"][dataset]}
    return flatten(fp)


def resolve_mixed_precision(setting: str, device_type: str) -> str:
    """``pretrain.mixed_precision`` for a device: ``auto`` is bf16 on CUDA devices that support
    it, else ``no``; fp16 off CUDA is a ConfigError."""
    if setting == "auto":
        if device_type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "no"
    if setting == "fp16" and device_type != "cuda":
        raise ConfigError("pretrain.mixed_precision=fp16 needs a CUDA device; use bf16 or no")
    return setting


def check_resumable(
    ckpt: dict[str, Any], fingerprint: dict[str, Any], total_epochs: int, out_dir: Path
) -> None:
    """Raise CheckpointError unless ``ckpt`` was trained with this fingerprint and epoch count."""
    old = ckpt.get("fingerprint", {})
    diff = sorted(
        k for k in set(old) | set(fingerprint) if old.get(k, "<absent>") != fingerprint.get(k)
    )
    if diff:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {fingerprint.get(k)!r}" for k in diff[:6])
        raise CheckpointError(
            f"{out_dir / CHECKPOINT_NAME} was trained with a different configuration ({shown}); "
            "resume with the same settings or start over with --overwrite"
        )
    if ckpt.get("total_epochs") != total_epochs:
        raise CheckpointError(
            f"{out_dir / CHECKPOINT_NAME} schedules {ckpt.get('total_epochs')} epochs, this run "
            f"{total_epochs}; the learning-rate schedule would differ (use --overwrite)"
        )


def _existing_outputs(out_dir: Path) -> list[str]:
    return [n for n in OUTPUT_NAMES if (out_dir / n).exists()]


def plan_pretraining(job: PretrainJob, state: Any) -> Plan:
    """Validate ``job`` for the processes of ``state`` (see :func:`process_state`) and load its
    data; all checks in the order cheapest first; raises ConfigError (or a subclass)."""
    from vssl.augment import eval_transform, get_preset
    from vssl.data import build_dataset, get_spec, load_tensors

    params = job.params
    if job.method not in KNOWN_METHODS:
        raise ConfigError(f"unknown method {job.method!r}; known: {', '.join(KNOWN_METHODS)}")
    spec = get_spec(job.dataset, params)  # DataError for unknown names / unreadable npz
    try:
        recipe = get_preset(spec.preset)
    except ValueError as e:
        raise ConfigError(f"dataset {job.dataset!r}: {e}") from None
    if recipe.channels != spec.channels:
        raise ConfigError(
            f"dataset {job.dataset!r} has {spec.channels} channel(s) but its augmentation preset "
            f"{spec.preset!r} is for {recipe.channels}"
        )
    total_epochs = job.epochs if job.epochs is not None else params.epochs_for(job.dataset)
    if total_epochs < 0:
        raise ConfigError(f"--epochs must be >= 0, got {total_epochs}")
    if job.stop_after is not None and not 0 < job.stop_after <= total_epochs:
        raise ConfigError(f"--stop-after must lie in [1, {total_epochs}], got {job.stop_after}")
    pc = params.pretrain
    world, accum, batch = state.num_processes, pc.grad_accum_steps, pc.batch_size
    if batch % (world * accum):
        raise ConfigError(
            f"pretrain.batch_size={batch} must be divisible by processes x grad_accum_steps "
            f"= {world} x {accum}"
        )
    device_type = state.device.type
    mixed = resolve_mixed_precision(pc.mixed_precision, device_type)
    if pc.gpu_augment == "auto":
        # Batched kornia augmentation beats per-sample workers on the CPU too (1 thread:
        # ~1,500-2,100 vs 250-470 img/s on this 2-core machine), and workers would compete
        # with training for the cores.
        gpu_aug = spec.in_memory
    else:
        gpu_aug = bool(pc.gpu_augment)
    if gpu_aug and not spec.in_memory:
        raise ConfigError(
            f"pretrain.gpu_augment=true needs an in-memory dataset; {job.dataset!r} is "
            f"{spec.kind} (use auto or false)"
        )

    # Outputs and the checkpoint to resume, before loading data (cheap and decisive).
    out_dir = Path(job.out_dir)
    existing = _existing_outputs(out_dir)
    resume_ckpt = None
    fingerprint = training_fingerprint(params, job.method, job.dataset)
    if job.resume and job.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if existing and not (job.resume or job.overwrite):
        raise ConfigError(
            f"{out_dir} already holds a run ({', '.join(existing)}); pass --resume to continue "
            "it or --overwrite to start over"
        )
    if job.resume and (out_dir / CHECKPOINT_NAME).exists():
        resume_ckpt = load_checkpoint(
            out_dir / CHECKPOINT_NAME,
            expect={
                "method": job.method,
                "variant": job.variant,
                "dataset": job.dataset,
                "seed": job.seed,
            },
        )
        check_resumable(resume_ckpt, fingerprint, total_epochs, out_dir)

    # Data: loading it is what proves the files are there (DataError otherwise).
    eval_tf = eval_transform(recipe, spec.mean, spec.std)
    nw = params.data.num_workers
    if spec.in_memory:
        x, y = load_tensors(job.dataset, spec.pretrain_split, params)
        train = {"images": x, "labels": y}
        xt, yt = load_tensors(job.dataset, "test", params)
        test = {"images": xt, "labels": yt, "transform": eval_tf}
        if spec.pretrain_split == "train":
            knn_train = {"images": x, "labels": y, "transform": eval_tf}
        else:
            xk, yk = load_tensors(job.dataset, "train", params)
            knn_train = {"images": xk, "labels": yk, "transform": eval_tf}
        n_train = len(y)
    else:
        train = {"dataset": build_dataset(job.dataset, spec.pretrain_split, params)}
        test = {"dataset": build_dataset(job.dataset, "test", params, eval_tf), "num_workers": nw}
        knn_train = {
            "dataset": build_dataset(job.dataset, "train", params, eval_tf),
            "num_workers": nw,
        }
        n_train = len(train["dataset"])
    steps = n_train // batch
    if steps == 0 and total_epochs > 0 and job.method != "random":
        raise ConfigError(
            f"dataset {job.dataset!r} has {n_train} training images, fewer than one batch of "
            f"pretrain.batch_size={batch}"
        )
    return Plan(
        job=job,
        spec=spec,
        recipe=recipe,
        total_epochs=total_epochs,
        opt_cfg=params.optimizer_cfg(job.method),
        world=world,
        accum=accum,
        micro_batch=batch // (world * accum),
        gpu_augment=gpu_aug,
        mixed_precision=mixed,
        train=train,
        test=test,
        knn_train=knn_train,
        n_train=n_train,
        steps_per_epoch=steps,
        fingerprint=fingerprint,
        resume_ckpt=resume_ckpt,
    )
