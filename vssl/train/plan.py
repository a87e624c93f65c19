"""Planning a pretraining job: every check before anything expensive, then the data.

:func:`plan_pretraining` turns a :class:`PretrainJob` into a validated :class:`Plan`, cheapest
checks first (method, the output folder, dataset and augmentation preset, epochs, the batch split
across processes, mixed precision, existing outputs and the checkpoint to resume), then loads the
data (which is what proves its files are there). Errors are ``ConfigError`` subclasses (the CLI
exits 2) and leave nothing behind: no model is built and no MLflow run started before the plan
exists.

Also here: the training fingerprint compared on ``--resume`` (:func:`training_fingerprint`,
:func:`check_resumable`) and the process state Accelerate launches into (:func:`use_cpu`,
:func:`process_state`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vssl.config import KNOWN_METHODS, ConfigError, Params
from vssl.io import check_writable_dir
from vssl.train.checkpoint import (
    ADDED_KEYS,
    CHECKPOINT_NAME,
    PARTIAL_CHECKPOINT_NAME,
    CheckpointError,
    NonFiniteCheckpointError,
    UnreadableCheckpointError,
    check_finite_weights,
    load_checkpoint,
)
from vssl.train.records import RUN_FILES

log = logging.getLogger("vssl.train")

# What only resuming may ignore, beyond the workflow's NON_RESULT_KEYS: the epoch counts (the
# schedule's length is checked on its own, against the checkpoint's `total_epochs`) and the
# monitors' cadences (they change history.csv, not the weights).
_RESUME_ALSO_IGNORES = {"pretrain": ("epochs", "epochs_by_dataset", "knn_every", "eval_every")}


def resume_ignored_keys() -> dict[str, set[str]]:
    """Section -> the keys that may differ on ``--resume`` (left out of
    :func:`training_fingerprint`): :data:`vssl.workflow.NON_RESULT_KEYS` plus
    ``pretrain.epochs``, ``pretrain.epochs_by_dataset``, ``pretrain.knn_every`` and
    ``pretrain.eval_every``."""
    from vssl.workflow import NON_RESULT_KEYS

    out: dict[str, set[str]] = {}
    for table in (NON_RESULT_KEYS, _RESUME_ALSO_IGNORES):
        for section, keys in table.items():
            out.setdefault(section, set()).update(keys)
    return out


@dataclass
class PretrainJob:
    """One pretraining job. ``stop_after``: stop (checkpointed, resumable) after that many
    completed epochs while keeping the schedule of ``epochs`` (simulates a preemption).
    ``restart_incompatible`` (with ``resume``): a checkpoint trained with other settings is
    discarded and the run starts over, instead of an error (what the pipeline's rules ask for:
    they rerun a job only when its inputs changed)."""

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
    restart_incompatible: bool = False

    def __post_init__(self) -> None:
        self.variant = self.variant or self.method


@dataclass
class Plan:
    """A validated job: everything :func:`plan_pretraining` checked or loaded.

    ``train``, ``test`` and ``knn_train`` are the data sources: ``{"images": uint8 (N, C, H, W),
    "labels": (N,)[, "transform": eval transform]}`` for in-memory datasets, else ``{"dataset":
    Dataset[, "num_workers": int]}``. ``micro_batch`` is one process's share of one accumulation
    step; ``resume_ckpt`` the loaded checkpoint to continue (None: start fresh), read from
    ``resume_path``; ``start_over``: delete the folder's run files before training
    (``--overwrite``, or an incompatible checkpoint discarded by ``restart_incompatible``).
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
    resume_path: Path | None = None
    start_over: bool = False

    @property
    def augment(self) -> str:
        """``batched``, ``split`` or ``per_sample`` (:func:`vssl.train.loader.augment_mode`)."""
        from vssl.train.loader import augment_mode

        return augment_mode(self.train, self.gpu_augment)


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
    ``--resume``): backbone, pretrain and data (minus :func:`resume_ignored_keys`), the
    method's hyperparameters and the npz dataset's declaration. The ``mlflow`` section is not
    part of it."""
    from vssl.tracking import flatten

    d = params.to_dict()
    ignored = resume_ignored_keys()
    fp: dict[str, Any] = {"backbone": d["backbone"], "methods": {method: d["methods"][method]}}
    for section in ("pretrain", "data"):
        skip = ignored.get(section, set())
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
    ckpt: dict[str, Any], fingerprint: dict[str, Any], total_epochs: int, path: Path
) -> None:
    """Raise CheckpointError unless ``ckpt`` (read from ``path``, a checkpoint file or the run
    folder) was trained with this fingerprint and epoch count."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    reason = incompatibility(ckpt, fingerprint, total_epochs)
    if reason is None:
        return
    if reason.startswith("schedules"):
        raise CheckpointError(
            f"{path} {reason}; the learning-rate schedule would differ (use --overwrite)"
        )
    raise CheckpointError(
        f"{path} {reason}; resume with the same settings or start over with --overwrite"
    )


def incompatibility(
    ckpt: dict[str, Any], fingerprint: dict[str, Any], total_epochs: int
) -> str | None:
    """Why ``ckpt`` cannot be continued with this fingerprint and epoch count (None: it can)."""
    old = ckpt.get("fingerprint", {})
    # a setting added since the checkpoint was written counts at the value it trained with
    for (section, name), defaults in ADDED_KEYS.items():
        prefix = f"{section}.{name}."
        if any(k.startswith(prefix) for k in old):
            old = {**{prefix + k: v for k, v in defaults.items()}, **old}
    diff = sorted(
        k for k in set(old) | set(fingerprint) if old.get(k, "<absent>") != fingerprint.get(k)
    )
    if diff:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {fingerprint.get(k)!r}" for k in diff[:6])
        return f"was trained with a different configuration ({shown})"
    if ckpt.get("total_epochs") != total_epochs:
        return f"schedules {ckpt.get('total_epochs')} epochs, this run {total_epochs}"
    return None


def _existing_outputs(out_dir: Path) -> list[str]:
    return [n for n in RUN_FILES if (out_dir / n).exists()]


def _checkpoint_to_resume(out_dir: Path, expect: dict[str, Any]) -> tuple[Path, dict] | None:
    """The checkpoint ``--resume`` continues from: checkpoint.pt when it is complete, else
    checkpoint.partial.pt (an unfinished run), else an unfinished checkpoint.pt (written by
    earlier versions); None when the folder holds neither."""
    complete, partial = out_dir / CHECKPOINT_NAME, out_dir / PARTIAL_CHECKPOINT_NAME
    found = None
    if complete.exists():
        ckpt = load_checkpoint(complete, expect=expect)
        if ckpt.get("complete") or not partial.exists():
            found = complete, ckpt
    if found is None and partial.exists():
        found = partial, load_checkpoint(partial, expect=expect)
    if found is not None:
        # NaN weights would pass as "already complete" or train on as NaN until the guard fires
        check_finite_weights(found[1]["model"], str(found[0]))
    return found


def plan_pretraining(job: PretrainJob, state: Any) -> Plan:
    """Validate ``job`` for the processes of ``state`` (see :func:`process_state`) and load its
    data; all checks in the order cheapest first; raises ConfigError (or a subclass)."""
    from vssl.augment import eval_transform, get_preset
    from vssl.data import build_dataset, get_spec, load_tensors

    params = job.params
    if job.method not in KNOWN_METHODS:
        raise ConfigError(f"unknown method {job.method!r}; known: {', '.join(KNOWN_METHODS)}")
    # The folder must be able to hold the run (not a file, no file among its parents, writable):
    # otherwise a whole run would train and then die at its first checkpoint.
    out_dir = check_writable_dir(job.out_dir, "--out folder")
    if job.restart_incompatible and not job.resume:
        raise ConfigError("--restart-incompatible only applies with --resume")
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
    if total_epochs == 0 and job.method != "random":
        # It would write a checkpoint marked complete that no step ever trained.
        raise ConfigError(
            f"0 epochs would leave {job.method} untrained; the untrained floor is the method "
            "`random` (or pass --epochs N with N >= 1)"
        )
    if job.stop_after is not None and not 0 < job.stop_after <= total_epochs:
        raise ConfigError(f"--stop-after must lie in [1, {total_epochs}], got {job.stop_after}")
    pc = params.pretrain
    world, accum, batch = state.num_processes, pc.grad_accum_steps, pc.batch_size
    if batch % (world * accum):
        raise ConfigError(
            f"pretrain.batch_size={batch} must be divisible by processes x grad_accum_steps "
            f"= {world} x {accum}"
        )
    if batch // (world * accum) < 2 and job.method != "random":
        # BatchNorm in training mode needs two samples per process; one would fail at the
        # first step, after the data and the model were loaded.
        raise ConfigError(
            f"pretrain.batch_size={batch} gives {batch // (world * accum)} image per process and "
            f"micro-step (processes x grad_accum_steps = {world} x {accum}); BatchNorm needs "
            "at least 2"
        )
    device_type = state.device.type
    mixed = resolve_mixed_precision(pc.mixed_precision, device_type)
    if pc.gpu_augment == "auto":
        # In-memory images: batched augmentation beats per-sample workers on the CPU too
        # (1 thread: ~1,500-2,100 vs 250-470 img/s on this 2-core machine), and workers would
        # compete with training for the cores. Image folders: on an accelerator the workers
        # only decode and crop, the device does the rest ("split"); on the CPU the batched
        # photometric ops run at half the per-sample rate (38 vs 85 img/s per core at 224 px,
        # benchmarks/folder_augment.py), and in the training process, not beside it.
        gpu_aug = spec.in_memory or device_type != "cpu"
    else:
        gpu_aug = bool(pc.gpu_augment)

    if (shadowed := params.shadowed_clip(job.method)) is not None:
        log.warning("%s", shadowed)

    # Outputs and the checkpoint to resume, before loading data (cheap and decisive).
    existing = _existing_outputs(out_dir)
    resume_ckpt = resume_path = None
    start_over = job.overwrite
    fingerprint = training_fingerprint(params, job.method, job.dataset)
    if job.resume and job.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if existing and not (job.resume or job.overwrite):
        raise ConfigError(
            f"{out_dir} already holds a run ({', '.join(existing)}); pass --resume to continue "
            "it or --overwrite to start over"
        )
    if job.resume:
        expect = {"method": job.method, "variant": job.variant, "dataset": job.dataset}
        try:
            found = _checkpoint_to_resume(out_dir, {**expect, "seed": job.seed})
        except (UnreadableCheckpointError, NonFiniteCheckpointError) as e:
            if not job.restart_incompatible:
                raise type(e)(f"{e}; pass --overwrite to start this run over") from None
            # The pipeline's rules pass --restart-incompatible: a state that cannot be used
            # would otherwise fail every rerun of the job.
            log.warning("%s; starting over (--restart-incompatible)", e)
            found, start_over = None, True
        if found is not None:
            resume_path, resume_ckpt = found
            reason = incompatibility(resume_ckpt, fingerprint, total_epochs)
            if reason is not None and job.restart_incompatible:
                log.warning("%s %s; starting over (--restart-incompatible)", resume_path, reason)
                resume_ckpt = resume_path = None
                start_over = True
            else:
                check_resumable(resume_ckpt, fingerprint, total_epochs, resume_path)

    # Data: loading it is what proves the files are there (DataError otherwise).
    eval_tf = eval_transform(recipe, spec.mean, spec.std)
    nw = params.data.workers()
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
        resume_path=resume_path,
        start_over=start_over,
    )
