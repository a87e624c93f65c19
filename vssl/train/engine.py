"""The pretraining engine: Accelerate (device placement, DDP, mixed precision, gradient
accumulation), LARS/SGD/AdamW with warm-up + cosine, solo-learn's online linear probe, the kNN
monitor, checkpoints, resume, guards and MLflow.

One call of :func:`pretrain` runs one (dataset, method, seed) job into ``out_dir``:

1. *Validate* everything (method, dataset and its files, augmentation preset, batch split across
   processes, existing outputs, the checkpoint to resume) before any model is built or MLflow run
   started; errors are ``ConfigError`` subclasses and leave nothing behind.
2. Build the method (seeded), its optimiser and schedule (per iteration, ``lr = base_lr * B / 256``)
   and the online probe (a linear classifier on detached backbone features with its own SGD; its
   cross-entropy is added to the loss, so DDP averages its gradients with the rest).
3. Train: each epoch's batch order and augmentations depend only on (seed, epoch)
   (:mod:`vssl.train.loader`), and the global RNG (VSSL's reparameterisation noise) is reseeded
   from (seed, epoch, rank) at the start of every epoch, so stopping after epoch e and resuming
   gives exactly the numbers of an uninterrupted run (on CPU).
4. After every epoch: the probe's top-1 on the test split, every ``knn_every`` epochs (and at
   the end) the kNN monitor, guards, MLflow metrics, and every ``checkpoint_every`` epochs (and
   at the end) ``checkpoint.pt`` + ``history.csv``. At the end ``metrics.json``.

Existing outputs: without ``--resume`` a directory that already holds a checkpoint, metrics or
history is an error unless ``--overwrite`` (which deletes those three files first). With
``--resume`` the last checkpoint must match method, dataset, seed, epoch count and the training
configuration; a complete run is not retrained (its metrics.json is rewritten if missing).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vssl.config import KNOWN_METHODS, ConfigError, Params
from vssl.train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from vssl.train.guards import NonFiniteLossError

log = logging.getLogger("vssl.train")

METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.csv"
OUTPUT_NAMES = (CHECKPOINT_NAME, METRICS_NAME, HISTORY_NAME)
# history.csv columns around the method's own loss terms (inserted after "loss").
HISTORY_HEAD = ["epoch", "loss"]
HISTORY_TAIL = [
    "online_probe_loss",
    "lr",
    "tau",
    "sigma2_student",
    "sigma2_teacher",
    "online_probe_top1",
    "knn_top1",
    "z_spread",
    "images_per_second",
    "epoch_time_s",
]
_NOT_TERMS = {"loss", "feats", "z", "probe_loss", "sigma2_student", "sigma2_teacher"}
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
class _Plan:
    """Everything validated before any expensive work."""

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
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# validation


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


def _mixed_precision(setting: str, device_type: str) -> str:
    if setting == "auto":
        if device_type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "no"
    if setting == "fp16" and device_type != "cuda":
        raise ConfigError("pretrain.mixed_precision=fp16 needs a CUDA device; use bf16 or no")
    return setting


def _existing_outputs(out_dir: Path) -> list[str]:
    return [n for n in OUTPUT_NAMES if (out_dir / n).exists()]


def _validate(job: PretrainJob, state: Any) -> _Plan:
    """All checks, in the order cheapest first; raises ConfigError (or a subclass)."""
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
    mixed = _mixed_precision(pc.mixed_precision, device_type)
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
        _check_resumable(resume_ckpt, fingerprint, total_epochs, out_dir)

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
    return _Plan(
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


def _check_resumable(
    ckpt: dict[str, Any], fingerprint: dict[str, Any], total_epochs: int, out_dir: Path
) -> None:
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


# ---------------------------------------------------------------------------------------------
# model


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


def train_step(
    accelerator: Any,
    model: nn.Module,
    optimizers: tuple[Any, ...],
    x1: Tensor,
    x2: Tensor,
    y: Tensor,
    check: Callable[[Tensor], None] | None = None,
    clip: tuple[list[Tensor], float] | None = None,
) -> dict[str, Tensor]:
    """One micro-step: forward (``TrainModule``), ``check(loss)`` before anything changes,
    backward of ``loss + probe_loss`` (Accelerate scales it by 1/accumulation steps), then the
    optimisers step and clear their gradients (only on the accumulation boundary: prepared
    optimisers skip otherwise). The scheduler and the EMA update belong to the caller."""
    with accelerator.accumulate(model):
        out = model(x1, x2, y)
        if check is not None:
            check(out["loss"])
        accelerator.backward(out["loss"] + out["probe_loss"])
        if clip is not None and accelerator.sync_gradients:
            params, max_norm = clip  # the method's parameters: the probe has its own loss
            accelerator.clip_grad_norm_(params, max_norm)
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
    return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _data_spec_dict(spec: Any) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# outputs


def _history_columns(terms: list[str]) -> list[str]:
    return HISTORY_HEAD + terms + HISTORY_TAIL


def _history_csv(rows: list[dict[str, Any]], terms: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_history_columns(terms), extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------------------------------
# the run


def pretrain(job: PretrainJob) -> dict[str, Any]:
    """Run one pretraining job (see the module docstring); returns the final metrics
    (``{}`` on non-main processes and for a ``stop_after`` run)."""
    # Denormal floats make CPU convolutions and BatchNorm ~3x slower here (measured on the
    # quick profile); flushing them to zero changes no result beyond 1e-38.
    torch.set_flush_denormal(True)
    plan = _validate(job, _state())
    ck = plan.resume_ckpt
    if ck is not None and ck.get("complete"):
        return _finish_complete(plan, ck)
    if job.overwrite:
        state = _state()
        if state.is_main_process:
            for name in OUTPUT_NAMES:
                (Path(job.out_dir) / name).unlink(missing_ok=True)
        state.wait_for_everyone()
    return _Runner(plan).run()


def _use_cpu() -> bool:
    """CPU mode: asked for (``accelerate launch --cpu`` sets ACCELERATE_USE_CPU), or no CUDA in a
    multi-process launch (torchrun); Accelerate only forms a gloo group on CPU when told so."""
    import os

    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _state() -> Any:
    from accelerate import PartialState

    return PartialState(cpu=_use_cpu())


def _finish_complete(plan: _Plan, ck: dict[str, Any]) -> dict[str, Any]:
    """``--resume`` on a finished run: restore metrics.json/history.csv if missing."""
    from vssl.io import write_json, write_text

    out = Path(plan.job.out_dir)
    log.info("%s is already complete (%d epochs); nothing to train", out, ck["epoch"])
    if _state().is_main_process:
        if not (out / HISTORY_NAME).exists():
            write_text(out / HISTORY_NAME, _history_csv(ck.get("history", []), ck.get("terms", [])))
        if not (out / METRICS_NAME).exists() and ck.get("final_metrics"):
            write_json(out / METRICS_NAME, ck["final_metrics"])
    return dict(ck.get("final_metrics") or {})


class _Runner:
    """State of one pretraining run (built only after validation)."""

    def __init__(self, plan: _Plan) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        from vssl.augment import GPUTwoViewAugment, TwoViewTransform
        from vssl.train.checkpoint import build_method
        from vssl.train.optim import build_optimizer, build_scheduler, scaled_lr

        self.plan, self.job, self.params = plan, plan.job, plan.job.params
        self.out_dir = Path(self.job.out_dir)
        self.ckpt_path = self.out_dir / CHECKPOINT_NAME
        pc = self.params.pretrain
        self.acc = Accelerator(
            cpu=_use_cpu(),
            mixed_precision=plan.mixed_precision,
            gradient_accumulation_steps=plan.accum,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        )
        self.device = self.acc.device
        self.is_main = self.acc.is_main_process
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes; determinism is a CPU promise

        _seed_everything(self.job.seed)
        spec = plan.spec
        method, feature_dim = build_method(self.job.method, self.params, _data_spec_dict(spec))
        self.trainable = bool(getattr(method, "trainable", True))
        if self.acc.num_processes > 1 and self.device.type == "cuda":
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        probe = online_probe(feature_dim, spec.num_classes)
        self.module = TrainModule(method, probe)
        self.total_steps = plan.steps_per_epoch * plan.total_epochs
        self.lr = scaled_lr(plan.opt_cfg["base_lr"], pc.batch_size)
        self.optimizer = self.scheduler = self.probe_opt = None
        if self.trainable:
            self.optimizer = build_optimizer(
                plan.opt_cfg["optimizer"],
                method,
                lr=self.lr,
                weight_decay=plan.opt_cfg["weight_decay"],
                momentum=plan.opt_cfg["momentum"],
                lars_eta=plan.opt_cfg["lars_eta"],
            )
            warmup = round(plan.opt_cfg["warmup_epochs"] * plan.steps_per_epoch)
            self.scheduler = build_scheduler(
                self.optimizer, warmup, self.total_steps, plan.opt_cfg["min_lr"]
            )
            self.probe_opt = torch.optim.SGD(
                probe.parameters(), lr=pc.online_probe_lr, momentum=0.9, weight_decay=0.0
            )
            self.model, self.optimizer, self.probe_opt = self.acc.prepare(
                self.module, self.optimizer, self.probe_opt
            )
        else:
            self.model = self.module.to(self.device)
        self.method = self.acc.unwrap_model(self.model).method
        clip_norm = plan.opt_cfg.get("grad_clip_norm")
        self.clip = None
        if clip_norm is not None:
            self.clip = ([p for p in self.method.parameters() if p.requires_grad], clip_norm)
        self.probe = self.acc.unwrap_model(self.model).probe

        # Data on the device (batched augmentation) or per-sample in DataLoader workers.
        recipe, mean, std = plan.recipe, spec.mean, spec.std
        if plan.gpu_augment:
            self.augment = GPUTwoViewAugment(recipe, mean, std).to(self.device)
            self.train_images = plan.train["images"].to(self.device)
            self.train_labels = plan.train["labels"].to(self.device)
        else:
            from vssl.data import TensorImageDataset
            from vssl.train.loader import SeededTwoViewDataset

            base = plan.train.get("dataset") or TensorImageDataset(
                plan.train["images"], plan.train["labels"]
            )
            self.cpu_dataset = SeededTwoViewDataset(
                base, TwoViewTransform(recipe, mean, std), self.job.seed
            )
        for src in (plan.test, plan.knn_train):
            if "images" in src and plan.gpu_augment:
                src["images"] = src["images"].to(self.device)
                src["labels"] = src["labels"].to(self.device)

        self.start_epoch, self.global_step, self.images_seen = 0, 0, 0
        self.train_time_s, self.prev_wall_s = 0.0, 0.0
        self.history: list[dict[str, Any]] = []
        self.terms: list[str] = []
        self.run_id: str | None = None
        self.last_ckpt: str | None = None
        ck = plan.resume_ckpt
        if ck is not None:
            self._restore(ck)

    # -- checkpoint ----------------------------------------------------------------------------

    def _restore(self, ck: dict[str, Any]) -> None:
        from vssl.train.checkpoint import set_rng_state

        self.method.load_state_dict(ck["model"])
        if self.trainable:
            self.probe.load_state_dict(ck["online_probe"]["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.probe_opt.load_state_dict(ck["online_probe"]["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        if ck.get("world_size", self.acc.num_processes) != self.acc.num_processes:
            log.warning(
                "resuming a %s-process run with %s processes: batches are split differently, "
                "so the numbers will not match an uninterrupted run exactly",
                ck.get("world_size"),
                self.acc.num_processes,
            )
        self.start_epoch = int(ck["epoch"])
        self.global_step = int(ck.get("global_step", 0))
        self.images_seen = int(ck.get("images_seen", 0))
        self.train_time_s = float(ck.get("train_time_s", 0.0))
        self.prev_wall_s = float(ck.get("wall_time_s", 0.0))
        self.history = list(ck.get("history", []))
        self.terms = list(ck.get("terms", []))
        self.run_id = ck.get("mlflow_run_id")
        self.last_ckpt = str(self.ckpt_path)
        log.info("resuming %s from epoch %d", self.ckpt_path, self.start_epoch)

    def _checkpoint(self, epoch: int, complete: bool, final: dict | None = None) -> None:
        """Save checkpoint.pt and history.csv (main process), then sync."""
        from vssl.io import write_text
        from vssl.tracking import git_commit, library_versions
        from vssl.train.checkpoint import rng_state, save_checkpoint

        if self.is_main:
            ck = {
                "method": self.job.method,
                "variant": self.job.variant,
                "dataset": self.job.dataset,
                "seed": self.job.seed,
                "epoch": epoch,
                "total_epochs": self.plan.total_epochs,
                "complete": complete,
                "config": self.params.to_dict(),
                "fingerprint": self.plan.fingerprint,
                "data_spec": _data_spec_dict(self.plan.spec),
                "model": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "online_probe": {
                    "model": self.probe.state_dict(),
                    "optimizer": self.probe_opt.state_dict() if self.probe_opt else None,
                }
                if self.trainable
                else None,
                "rng": {**rng_state(), "sampler": {"seed": self.job.seed, "epoch": epoch}},
                "global_step": self.global_step,
                "images_seen": self.images_seen,
                "train_time_s": self.train_time_s,
                "wall_time_s": self._wall(),
                "history": self.history,
                "terms": self.terms,
                "final_metrics": final,
                "mlflow_run_id": self.run_id,
                "git_commit": git_commit(),
                "versions": library_versions(),
                "world_size": self.acc.num_processes,
            }
            save_checkpoint(self.ckpt_path, ck)
            write_text(self.out_dir / HISTORY_NAME, _history_csv(self.history, self.terms))
            self.last_ckpt = str(self.ckpt_path)
        self.acc.wait_for_everyone()

    def _wall(self) -> float:
        return self.prev_wall_s + (time.perf_counter() - self.t_start)

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, epoch: int, knn: bool) -> dict[str, float | None]:
        from vssl.train.monitor import extract_features, knn_top1, probe_top1

        bs = max(self.plan.micro_batch, 256)
        backbone = self.method.backbone
        out: dict[str, float | None] = {"online_probe_top1": None, "knn_top1": None}
        test_f, test_y = extract_features(backbone, self.plan.test, self.acc, bs)
        if self.trainable:
            out["online_probe_top1"] = probe_top1(self.probe, test_f, test_y)
        if knn:
            train_f, train_y = extract_features(backbone, self.plan.knn_train, self.acc, bs)
            out["knn_top1"] = knn_top1(
                train_f, train_y, test_f, test_y, num_classes=self.plan.spec.num_classes
            )
        return out

    def _knn_due(self, epoch_done: int) -> bool:
        every = self.params.pretrain.knn_every
        if every <= 0:
            return False
        return epoch_done % every == 0 or epoch_done == self.plan.total_epochs

    # -- training ------------------------------------------------------------------------------

    def _batches(self, epoch: int) -> Any:
        from vssl.train.loader import batched_epoch, cpu_epoch, epoch_micro_batches

        p = self.plan
        plan = epoch_micro_batches(
            p.n_train,
            self.params.pretrain.batch_size,
            p.accum,
            p.world,
            self.acc.process_index,
            self.job.seed,
            epoch,
        )
        if p.gpu_augment:
            return batched_epoch(
                self.train_images,
                self.train_labels,
                self.augment,
                plan,
                self.job.seed,
                epoch,
                self.acc.process_index,
            )
        return cpu_epoch(self.cpu_dataset, plan, epoch, self.params.data.num_workers, self.device)

    def _check_finite(self, loss: Tensor, epoch: int) -> None:
        """Raise NonFiniteLossError if the loss is NaN/inf on any process (all agree)."""
        from vssl.train.guards import nonfinite_message

        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.acc.num_processes > 1:
            bad = self.acc.reduce(bad, reduction="sum")
        if bad.item() != 0:
            raise NonFiniteLossError(
                nonfinite_message(self.global_step + 1, epoch + 1, self.last_ckpt)
            )

    def _train_epoch(self, epoch: int, progress: Any) -> dict[str, Any]:
        from vssl.train.loader import STEP, mix_seed
        from vssl.train.monitor import embedding_spread

        _seed_everything(mix_seed(self.job.seed, STEP, epoch, self.acc.process_index))
        self.model.train()
        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        n_micro = 0
        lr = tau = None
        pc = self.params.pretrain
        t0 = time.perf_counter()
        for x1, x2, y in self._batches(epoch):
            out = train_step(
                self.acc,
                self.model,
                (self.optimizer, self.probe_opt),
                x1,
                x2,
                y,
                check=lambda loss, e=epoch: self._check_finite(loss, e),
                clip=self.clip,
            )
            n_micro += 1
            if not self.terms:
                self.terms = sorted(
                    k for k, v in out.items() if k not in _NOT_TERMS and v.ndim == 0
                )
            for k, v in out.items():
                if k not in ("feats", "z") and v.ndim == 0:
                    sums[k] += v.detach().float()
            sums["z_spread"] += embedding_spread(out["z"])
            if self.acc.sync_gradients:
                lr = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                self.global_step += 1
                tau = self.method.momentum_update(self.global_step, self.total_steps)
                self._report_step(epoch, sums, n_micro, lr, t0, progress, pc.log_every)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        images = self.plan.steps_per_epoch * pc.batch_size
        self.images_seen += images
        self.train_time_s += dt
        means = {k: v / max(n_micro, 1) for k, v in sums.items()}
        if self.acc.num_processes > 1:
            keys = sorted(means)
            stacked = self.acc.reduce(torch.stack([means[k] for k in keys]), reduction="mean")
            means = dict(zip(keys, stacked, strict=True))
        row: dict[str, Any] = {k: float(v) for k, v in means.items()}
        row["online_probe_loss"] = row.pop("probe_loss", None)
        row.update(lr=lr, tau=tau, images_per_second=images / dt if dt > 0 else None)
        row["epoch_time_s"] = dt
        return row

    def _report_step(
        self,
        epoch: int,
        sums: dict[str, Tensor],
        n_micro: int,
        lr: float,
        t0: float,
        progress: Any,
        log_every: int,
    ) -> None:
        step_in_epoch = self.global_step - epoch * self.plan.steps_per_epoch
        if progress is None and step_in_epoch % log_every != 0:
            return
        ips = step_in_epoch * self.params.pretrain.batch_size / max(time.perf_counter() - t0, 1e-9)
        loss = float(sums["loss"]) / n_micro
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}", refresh=False)
            progress.update(1)
        elif self.is_main:
            log.info(
                "epoch %d/%d step %d/%d loss %.4f lr %.4g img/s %.1f",
                epoch + 1,
                self.plan.total_epochs,
                step_in_epoch,
                self.plan.steps_per_epoch,
                loss,
                lr,
                ips,
            )

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from vssl import tracking

        self.t_start = time.perf_counter()
        job = self.job
        ctx: Any = contextlib.nullcontext()
        if self.is_main:
            ctx = tracking.start_run(
                self.params,
                stage="pretrain",
                dataset=job.dataset,
                method=job.method,
                variant=job.variant,
                seed=job.seed,
                run_id=self.run_id,
            )
        with ctx as active:
            if active is not None:
                self.run_id = active.info.run_id
                tracking.set_tags(
                    {
                        "device": self.device.type,
                        "world_size": self.acc.num_processes,
                        "mixed_precision": self.plan.mixed_precision,
                        "gpu_augment": self.plan.gpu_augment,
                        "total_epochs": self.plan.total_epochs,
                    }
                )
            if not self.trainable:
                return self._run_untrained()
            return self._train_loop()

    def _progress(self) -> Any:
        show = self.job.show_progress
        if show is None:
            show = sys.stderr.isatty()
        if not (show and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.plan.steps_per_epoch * self.plan.total_epochs,
            initial=self.global_step,
            unit="step",
            dynamic_ncols=True,
        )

    def _train_loop(self) -> dict[str, Any]:
        from vssl import tracking
        from vssl.train.guards import collapse_warnings

        p, pc = self.plan, self.params.pretrain
        stop = self.job.stop_after or p.total_epochs
        logvar_min = self.params.method_cfg(self.job.method).get("logvar_min")
        progress = self._progress()
        row: dict[str, Any] = {}
        redirect: Any = contextlib.nullcontext()
        if progress is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            # log lines go through tqdm.write, above the bar instead of through it
            redirect = logging_redirect_tqdm(loggers=[logging.getLogger("vssl")])
        with redirect:
            try:
                for epoch in range(self.start_epoch, min(stop, p.total_epochs)):
                    row = {"epoch": epoch + 1, **self._train_epoch(epoch, progress)}
                    row.update(self._evaluate(epoch, knn=self._knn_due(epoch + 1)))
                    self.history.append(row)
                    self._log_epoch(row)
                    for msg in collapse_warnings(
                        row.get("z_spread"), row.get("sigma2_student"), logvar_min
                    ):
                        log.warning("epoch %d: %s", epoch + 1, msg)
                        if self.is_main:
                            tracking.set_tags({"warning": msg})
                    done = epoch + 1
                    if done == p.total_epochs:
                        break
                    if done % pc.checkpoint_every == 0 or done == stop:
                        self._checkpoint(done, complete=False)
            finally:
                if progress is not None:
                    progress.close()
        if self.job.stop_after is not None and self.job.stop_after < p.total_epochs:
            log.info("stopped after epoch %d of %d (resumable)", stop, p.total_epochs)
            return {}
        return self._finish(row)

    def _log_epoch(self, row: dict[str, Any]) -> None:
        from vssl import tracking

        if not self.is_main:
            return
        log.info(
            "epoch %d/%d %s",
            row["epoch"],
            self.plan.total_epochs,
            " ".join(
                f"{k} {v:.4g}"
                for k, v in row.items()
                if k != "epoch" and isinstance(v, float) and math.isfinite(v)
            ),
        )
        tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    def _last(self, key: str) -> Any:
        """The most recent non-None value of a history column."""
        for row in reversed(self.history):
            if row.get(key) is not None:
                return row[key]
        return None

    def _final_metrics(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        m: dict[str, Any] = {
            "method": self.job.method,
            "variant": self.job.variant,
            "dataset": self.job.dataset,
            "seed": self.job.seed,
            "profile": self.params.profile,
            "epochs": self.plan.total_epochs,
            "global_step": self.global_step,
            "online_probe_top1": last.get("online_probe_top1"),
            "knn_top1": self._last("knn_top1"),
            "loss": last.get("loss"),
            **{t: last.get(t) for t in self.terms},
            "sigma2_student": last.get("sigma2_student"),
            "sigma2_teacher": last.get("sigma2_teacher"),
            "images_per_second": self.images_seen / self.train_time_s
            if self.train_time_s > 0
            else None,
            "train_time_s": self.train_time_s,
            "wall_time_s": self._wall(),
            "mlflow_run_id": self.run_id,
            "world_size": self.acc.num_processes,
            "device": self.device.type,
            "mixed_precision": self.plan.mixed_precision,
            "gpu_augment": self.plan.gpu_augment,
            "knn": {"k": 20, "temperature": 0.07, "split": "train -> test"},
            "accuracy_unit": "percent",
        }
        return {k: _finite_or_none(v) for k, v in m.items()}

    def _finish(self, _row: dict[str, Any]) -> dict[str, Any]:
        from vssl import tracking
        from vssl.io import write_json

        metrics = self._final_metrics()
        self._checkpoint(self.plan.total_epochs, complete=True, final=metrics)
        if self.is_main:
            write_json(self.out_dir / METRICS_NAME, metrics)
            tracking.log_metrics(
                {
                    f"final_{k}": v
                    for k, v in metrics.items()
                    if k in ("online_probe_top1", "knn_top1", "loss", "images_per_second")
                }
            )
            tracking.log_artifact(self.out_dir / HISTORY_NAME)
            tracking.log_artifact(self.out_dir / METRICS_NAME)
            self._log_config_artifact()
        self.acc.wait_for_everyone()
        return metrics if self.is_main else {}

    def _log_config_artifact(self) -> None:
        """The resolved config as ``config/params.yaml`` in the run's artifacts."""
        import tempfile

        import yaml

        from vssl import tracking
        from vssl.io import write_text

        with tempfile.TemporaryDirectory() as td:
            cfg = Path(td) / "params.yaml"
            write_text(cfg, yaml.safe_dump(self.params.to_dict(), sort_keys=False))
            tracking.log_artifact(cfg, artifact_path="config")

    def _run_untrained(self) -> dict[str, Any]:
        """The `random` method: save the initial weights (epoch 0), kNN on them, no probe."""
        from vssl import tracking

        knn = self.params.pretrain.knn_every > 0
        ev = self._evaluate(0, knn=knn)
        self.history = []
        metrics = self._final_metrics()
        metrics.update(epochs=0, online_probe_top1=None, knn_top1=ev["knn_top1"])
        metrics["images_per_second"] = None
        if self.is_main:
            tracking.log_metrics({"knn_top1": ev["knn_top1"]}, step=0)
        return self._finish_untrained(metrics)

    def _finish_untrained(self, metrics: dict[str, Any]) -> dict[str, Any]:
        from vssl import tracking
        from vssl.io import write_json

        self._checkpoint(0, complete=True, final=metrics)
        if self.is_main:
            write_json(self.out_dir / METRICS_NAME, metrics)
            tracking.log_artifact(self.out_dir / HISTORY_NAME)
            tracking.log_artifact(self.out_dir / METRICS_NAME)
            self._log_config_artifact()
        self.acc.wait_for_everyone()
        return metrics if self.is_main else {}
