"""What a pretraining run leaves behind: ``history.csv``, ``metrics.json``, the contents of
``checkpoint.pt`` and the MLflow metrics and artifacts.

``history.csv`` has one row per epoch; its columns (:func:`history_columns`)::

    epoch, loss, <loss terms, sorted>, online_probe_loss, lr, tau, grad_norm,
    sigma2_student, sigma2_teacher, <the method's other diagnostics>,
    online_probe_top1, knn_top1, z_spread, images_per_second, epoch_time_s, monitor_time_s

The loss terms and diagnostics come from the method: every scalar of its ``training_step``
other than ``loss`` is a loss term unless the method lists it in ``Method.diagnostics``
(log-only values such as VSSL's variances). ``sigma2_student`` and ``sigma2_teacher`` are
columns of every run (empty cells where a method has none), so that every history keeps the
layout it always had. Empty cells mean "not applicable" (e.g. ``knn_top1`` between kNN epochs).

``grad_norm`` is the global norm of the method's gradients before any clipping
(``grad_clip_norm``), averaged over the epoch's optimiser steps: it says how often, and by how
much, a clip rescales the steps. ``epoch_time_s`` is the epoch's training loop; ``monitor_time_s`` its monitors after it (the
online probe's pass over the test split, kNN). ``metrics.json`` (:func:`final_metrics`) holds the
last epoch's values, the run's counters and settings, and the cost of the work between epochs:
``monitor_time_s`` and ``checkpoint_time_s`` (periodic checkpoints and the in-memory copies
kept for a signal) summed over the run, and ``between_epoch_share``, their sum over
``train_time_s``; :func:`finish` ends every run, trained or not, the same way.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vssl.train.checkpoint import CHECKPOINT_NAME, PARTIAL_CHECKPOINT_NAME
from vssl.train.monitor import KNN_K, KNN_T

if TYPE_CHECKING:
    from torch import nn

    from vssl.config import Params
    from vssl.train.plan import Plan

log = logging.getLogger("vssl.train")

METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.csv"
# The declared outputs of a run (what Snakemake and DVC know), then every file a run writes:
# an unfinished run keeps its state in checkpoint.partial.pt, which no workflow declares, so
# neither Snakemake's cleanup of an incomplete job nor `dvc repro` deletes the progress.
OUTPUT_NAMES = (CHECKPOINT_NAME, METRICS_NAME, HISTORY_NAME)
RUN_FILES = (*OUTPUT_NAMES, PARTIAL_CHECKPOINT_NAME)

HISTORY_HEAD = ["epoch", "loss"]
# Per-step values the loop itself adds (after the loss terms).
STEP_COLUMNS = ["online_probe_loss", "lr", "tau", "grad_norm"]
# Diagnostic columns every history.csv and metrics.json carries (see the module docstring).
SHARED_DIAGNOSTICS = ["sigma2_student", "sigma2_teacher"]
# The per-epoch monitors and timings (last).
MONITOR_COLUMNS = [
    "online_probe_top1",
    "knn_top1",
    "z_spread",
    "images_per_second",
    "epoch_time_s",
    "monitor_time_s",
]
# Keys of a TrainModule output that are neither loss terms nor diagnostics.
_NOT_LOGGED = {"loss", "probe_loss", "feats", "z", "grad_norm"}
# metrics.json keys also logged to MLflow as final_<key>.
FINAL_MLFLOW_KEYS = (
    "online_probe_top1",
    "knn_top1",
    "loss",
    "images_per_second",
    "images_per_second_steady",
    "between_epoch_share",
)


def loss_terms(out: Mapping[str, Any], diagnostics: Iterable[str] = ()) -> list[str]:
    """The loss terms of a ``training_step`` output (sorted): its 0-d tensors other than
    ``loss``, ``probe_loss`` and the method's ``diagnostics``."""
    skip = _NOT_LOGGED | set(diagnostics)
    return sorted(k for k, v in out.items() if k not in skip and v.ndim == 0)


def diagnostic_columns(diagnostics: Iterable[str] = ()) -> list[str]:
    """:data:`SHARED_DIAGNOSTICS`, then the method's other diagnostics in their order."""
    return SHARED_DIAGNOSTICS + [d for d in diagnostics if d not in SHARED_DIAGNOSTICS]


def history_columns(terms: Iterable[str], diagnostics: Iterable[str] = ()) -> list[str]:
    """history.csv's header for a method with these loss terms and diagnostics."""
    diag = diagnostic_columns(diagnostics)
    own = [t for t in terms if t not in diag]
    return HISTORY_HEAD + own + STEP_COLUMNS + diag + MONITOR_COLUMNS


def history_csv(
    rows: list[dict[str, Any]], terms: Iterable[str], diagnostics: Iterable[str] = ()
) -> str:
    """history.csv's text: one line per row (None -> empty cell; keys outside the columns are
    left out)."""
    buf = io.StringIO()
    cols = history_columns(terms, diagnostics)
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def finite_or_none(v: Any) -> Any:
    """``v``, or None for a NaN or infinite float (JSON has neither)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class RunRecord:
    """What a run has done so far; saved in every checkpoint and restored on ``--resume``.

    ``wall_time_s`` is the wall time of the processes before this one (resumed runs);
    ``monitor_time_s`` and ``checkpoint_time_s`` the time spent between epochs on monitors and
    on checkpoints (a checkpoint file holds the time up to, not including, its own saving);
    ``terms`` are the loss terms (found at the first step), ``diagnostics`` the method's.
    """

    global_step: int = 0
    images_seen: int = 0
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    monitor_time_s: float = 0.0
    checkpoint_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None

    @classmethod
    def from_checkpoint(cls, ck: Mapping[str, Any], diagnostics: Iterable[str]) -> RunRecord:
        return cls(
            global_step=int(ck.get("global_step", 0)),
            images_seen=int(ck.get("images_seen", 0)),
            train_time_s=float(ck.get("train_time_s", 0.0)),
            wall_time_s=float(ck.get("wall_time_s", 0.0)),
            monitor_time_s=float(ck.get("monitor_time_s", 0.0)),
            checkpoint_time_s=float(ck.get("checkpoint_time_s", 0.0)),
            history=list(ck.get("history", [])),
            terms=list(ck.get("terms", [])),
            diagnostics=list(diagnostics),
            mlflow_run_id=ck.get("mlflow_run_id"),
        )

    def last(self, key: str) -> Any:
        """The most recent non-None value of a history column."""
        for row in reversed(self.history):
            if row.get(key) is not None:
                return row[key]
        return None


def between_epoch_share(record: RunRecord) -> float | None:
    """The work between epochs (monitors and checkpoints) as a fraction of the training loops'
    time; None before any training. Issue 11 asks for under 0.05 at full CIFAR-10."""
    if record.train_time_s <= 0:
        return None
    return (record.monitor_time_s + record.checkpoint_time_s) / record.train_time_s


def final_metrics(
    plan: Plan, record: RunRecord, *, wall_time_s: float, world_size: int, device: str
) -> dict[str, Any]:
    """metrics.json: the last epoch's values (kNN: the last epoch that ran it), the run's
    counters and settings; non-finite floats become None."""
    from vssl.tracking import host_environment

    job = plan.job
    last = record.history[-1] if record.history else {}
    diag = diagnostic_columns(record.diagnostics)
    m: dict[str, Any] = {
        "method": job.method,
        "variant": job.variant,
        "dataset": job.dataset,
        "seed": job.seed,
        "profile": job.params.profile,
        "epochs": plan.total_epochs,
        "global_step": record.global_step,
        "online_probe_top1": last.get("online_probe_top1"),
        "knn_top1": record.last("knn_top1"),
        "loss": last.get("loss"),
        **{t: last.get(t) for t in record.terms if t not in diag},
        **{d: last.get(d) for d in diag},
        "images_per_second": record.images_seen / record.train_time_s
        if record.train_time_s > 0
        else None,
        "train_time_s": record.train_time_s,
        "wall_time_s": wall_time_s,
        "monitor_time_s": record.monitor_time_s,
        "checkpoint_time_s": record.checkpoint_time_s,
        "between_epoch_share": between_epoch_share(record),
        "mlflow_run_id": record.mlflow_run_id,
        "world_size": world_size,
        "device": device,
        **host_environment(),
        "mixed_precision": plan.mixed_precision,
        "gpu_augment": plan.gpu_augment,
        "augment": plan.augment,
        "knn": {"k": KNN_K, "temperature": KNN_T, "split": "train -> test"},
        "accuracy_unit": "percent",
    }
    return {k: finite_or_none(v) for k, v in m.items()}


def checkpoint_contents(
    plan: Plan,
    record: RunRecord,
    *,
    epoch: int,
    complete: bool,
    final: dict[str, Any] | None,
    method: nn.Module,
    optimizer: Any,
    scheduler: Any,
    probe: nn.Module | None,
    probe_optimizer: Any,
    wall_time_s: float,
    world_size: int,
) -> dict[str, Any]:
    """The dict saved as checkpoint.pt after ``epoch`` completed epochs (keys: see
    :mod:`vssl.train.checkpoint`). ``probe`` None: no online probe (an untrained method);
    ``optimizer``/``scheduler``/``probe_optimizer`` may be None."""
    from vssl.tracking import git_commit, host_environment, library_versions
    from vssl.train.assembly import data_spec_dict
    from vssl.train.checkpoint import rng_state

    job = plan.job
    return {
        "method": job.method,
        "variant": job.variant,
        "dataset": job.dataset,
        "seed": job.seed,
        "epoch": epoch,
        "total_epochs": plan.total_epochs,
        "complete": complete,
        "config": job.params.to_dict(),
        "fingerprint": plan.fingerprint,
        "augment": plan.augment,
        "data_spec": data_spec_dict(plan.spec),
        "model": method.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "online_probe": {
            "model": probe.state_dict(),
            "optimizer": probe_optimizer.state_dict() if probe_optimizer else None,
        }
        if probe is not None
        else None,
        "rng": {**rng_state(), "sampler": {"seed": job.seed, "epoch": epoch}},
        "global_step": record.global_step,
        "images_seen": record.images_seen,
        "train_time_s": record.train_time_s,
        "wall_time_s": wall_time_s,
        "monitor_time_s": record.monitor_time_s,
        "checkpoint_time_s": record.checkpoint_time_s,
        "history": record.history,
        "terms": record.terms,
        "diagnostics": record.diagnostics,
        "final_metrics": final,
        "mlflow_run_id": record.mlflow_run_id,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "host": host_environment(),
        "world_size": world_size,
    }


def save_progress(out_dir: Path, contents: Mapping[str, Any]) -> Path:
    """Write the checkpoint (atomically) and history.csv from a :func:`checkpoint_contents`
    dict (main process only); returns the checkpoint's path.

    An unfinished run (``contents["complete"]`` false) goes to checkpoint.partial.pt; the
    complete one to checkpoint.pt, after which the partial file is removed (a kill between the
    two leaves both; ``--resume`` then takes the complete one and removes the other)."""
    from vssl.io import write_text
    from vssl.train.checkpoint import save_checkpoint

    out = Path(out_dir)
    complete = bool(contents.get("complete"))
    path = out / (CHECKPOINT_NAME if complete else PARTIAL_CHECKPOINT_NAME)
    save_checkpoint(path, contents)
    text = history_csv(contents["history"], contents["terms"], contents.get("diagnostics", ()))
    write_text(out / HISTORY_NAME, text)
    if complete:
        (out / PARTIAL_CHECKPOINT_NAME).unlink(missing_ok=True)
    return path


def log_epoch(row: Mapping[str, Any], total_epochs: int) -> None:
    """One epoch's history row: a log line and MLflow metrics at step ``epoch`` (main process,
    inside the run)."""
    from vssl import tracking

    log.info(
        "epoch %d/%d %s",
        row["epoch"],
        total_epochs,
        " ".join(
            f"{k} {v:.4g}"
            for k, v in row.items()
            if k != "epoch" and isinstance(v, float) and math.isfinite(v)
        ),
    )
    tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def log_config_artifact(params: Params) -> None:
    """The resolved config as ``config/params.yaml`` in the active run's artifacts."""
    import tempfile

    import yaml

    from vssl import tracking
    from vssl.io import write_text

    if not tracking.run_is_open():  # MLflow disabled
        return
    with tempfile.TemporaryDirectory() as td:
        cfg = Path(td) / "params.yaml"
        write_text(cfg, yaml.safe_dump(params.to_dict(), sort_keys=False))
        tracking.log_artifact(cfg, artifact_path="config")


def finish(
    accelerator: Any, out_dir: Path, contents: Mapping[str, Any] | None, params: Params
) -> dict[str, Any]:
    """The end of every run, trained or not: the complete checkpoint and history.csv, then
    metrics.json (``contents["final_metrics"]``), the ``final_*`` MLflow metrics, the history,
    metrics and config artifacts (all on the main process, whose ``contents`` is not None),
    then a sync. Returns the metrics on the main process, ``{}`` elsewhere."""
    from vssl import tracking
    from vssl.io import write_json

    main = accelerator.is_main_process
    if main:
        assert contents is not None
        save_progress(out_dir, contents)
    accelerator.wait_for_everyone()
    if not main:
        accelerator.wait_for_everyone()
        return {}
    metrics = dict(contents["final_metrics"])
    write_json(Path(out_dir) / METRICS_NAME, metrics)
    tracking.log_metrics({f"final_{k}": v for k, v in metrics.items() if k in FINAL_MLFLOW_KEYS})
    tracking.log_artifact(Path(out_dir) / HISTORY_NAME)
    tracking.log_artifact(Path(out_dir) / METRICS_NAME)
    log_config_artifact(params)
    accelerator.wait_for_everyone()
    return metrics


def restore_outputs(out_dir: Path, ck: Mapping[str, Any], is_main: bool) -> dict[str, Any]:
    """``--resume`` of a complete run: rewrite history.csv and metrics.json from the checkpoint
    where missing and remove a leftover checkpoint.partial.pt (main process); returns its final
    metrics."""
    from vssl.io import write_json, write_text

    out = Path(out_dir)
    if is_main:
        (out / PARTIAL_CHECKPOINT_NAME).unlink(missing_ok=True)
        if not (out / HISTORY_NAME).exists():
            text = history_csv(
                ck.get("history", []), ck.get("terms", []), ck.get("diagnostics", ())
            )
            write_text(out / HISTORY_NAME, text)
        if not (out / METRICS_NAME).exists() and ck.get("final_metrics"):
            write_json(out / METRICS_NAME, ck["final_metrics"])
    return dict(ck.get("final_metrics") or {})
