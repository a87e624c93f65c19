"""CPU-scale quality study: VSSL against BYOL, SimCLR, MoCo v3 and Barlow Twins (issue 6).

Every *config* (a method, or a VSSL ablation) is pretrained with the same backbone, budget
(epochs, images, batch) and seeds, then probed on frozen features, each stage run as the user
runs it (``python -m vssl pretrain | extract | probe`` subprocesses, profile ``quick`` plus
``--set`` overrides). The studies in docs/benchmarks.md, each well inside 90 min on an idle
2-core CPU (tuning first, then the study, which takes the tuned lrs from ``OUT/tuning.json``)::

    C="--seeds 0 1 2 --epochs 12 --train-subset 4085 --width 8 --batch-size 128 --jobs 2"
    T="--tune --lr-factors 0.1 0.3 1 3 --extend-edges"
    python benchmarks/quality.py --dataset cifar10_mini $C --test-subset 1000 $T \
        --out benchmarks/results/quality-cifar10_mini-e12
    python benchmarks/quality.py --dataset cifar10_mini $C --test-subset 1000 \
        --out benchmarks/results/quality-cifar10_mini-e12
    # the same two lines with --dataset fashion_mnist --test-subset 2000
    #   --out benchmarks/results/quality-fashion_mnist-e12

Configs: the methods (default ``vssl byol simclr mocov3 barlow_twins`` plus the ``random``
floor, an untrained backbone) and VSSL's ablations (:data:`ABLATIONS`):
``gaussian_likelihood`` (``methods.vssl.likelihood=gaussian``), ``gaussian_kl``
(``methods.vssl.kl=gaussian``), ``no_kl`` (``methods.vssl.beta=0``), ``no_sampling``
(``methods.vssl.sample=false``) and ``standard_normal_prior``
(``methods.vssl.prior=standard_normal``).

Outputs under ``--out`` (every file written atomically through :mod:`vssl.io`)::

    runs/<config>/seed<s>/          checkpoint.pt metrics.json history.csv   (vssl pretrain)
    features/<config>/seed<s>/      train.npz test.npz meta.json             (vssl extract)
    probes/<config>/seed<s>.json    the probe's flat results                 (vssl probe)
    records/<config>/seed<s>.json   overrides, lr, status, wall time per stage
    logs/<config>/seed<s>.<stage>.log   command line and output of each stage
    results.csv                     one row per (config, seed)
    summary.csv, summary.md         mean ± std over seeds per config, delta vs `random`
    quality.png                     bars: mean top-1 (kNN-20, linear) per config, error bar = 1 std
    study.json                      settings, machine, wall time of every invocation
    mlflow.db                       the MLflow store of every stage (MLFLOW_TRACKING_URI)
    tune/..., tuning.json, tuning.csv, tuning.md      the same for ``--tune``

Summary statistics over the ``n`` seeds of a config: ``mean = (1/n) sum_s a_s``,
``std = sqrt(sum_s (a_s - mean)^2 / (n - 1))`` (sample std; undefined for n = 1) and
``delta = mean(config) - mean(random)`` in accuracy points.

Resume: a (config, seed) whose probe JSON exists is skipped, provided its record holds the same
overrides (else the study stops before any work: the folder holds another configuration). A
killed pretraining resumes from its last checkpoint (``vssl pretrain --resume``).

``--tune``: for each selected config except ``random``, pretrain once (seed ``--tune-seed``) per
learning rate ``base_lr * f`` for ``f`` in ``--lr-factors`` (the same grid size, hence the same
tuning budget, for every method), extract, carve a seeded stratified validation split out of
the TRAIN features (``--val-fraction``), probe train-part -> val-part, and pick per config the
lr that maximises ``--select-metric`` on validation (default: the mean of kNN-20 and linear
top-1). The test features are deleted unread. Everything tried and the choice go to
``tuning.json``/``tuning.md``. With ``--extend-edges``, a config whose best lr is the grid's
smallest or largest gets one more lr one grid step further out, once (the same rule for every
config; :func:`edge_extensions`). A later study run with the same ``--out`` uses those lrs
(ablations inherit VSSL's choice unless tuned themselves), and its ``--tune-seed`` run of each
tuned config copies the grid's pretraining at the chosen lr instead of repeating it (the same
deterministic computation, matched on the recorded overrides; ``--no-reuse-tuning`` repeats
it). That run's extraction and probes are redone, on the test split this time.

Cost model (measured on the 2-core machine, 1 thread per run, two runs at a time, batched
augmentation, 2026-11-25): a run costs ``~20 s + epochs * N / r`` with ``r ~ 380`` images/s for
VSSL and BYOL at width 8 on cifar10_mini (32 px; SimCLR ~490, MoCo v3 ~310, Barlow Twins ~255)
and ``~480`` on Fashion-MNIST (28 px, one channel); the fixed part is three process start-ups,
extraction and the probes; ``random`` costs only the fixed part. The 12-epoch, 4,085-image
studies took 71 min (cifar10_mini) and 55 min (Fashion-MNIST), tuning included.
The first finished run prints the estimate of the whole study, then every run an ETA.
Threads: ``--threads 1`` (default) sets ``OMP_NUM_THREADS=1`` for every stage: on a busy
2-core machine two OpenMP threads per process spin against each other (steps measured 10-20x
slower); ``--jobs 2`` then uses both cores. Numbers do not depend on ``--jobs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from vssl.config import ConfigError, Params, load_params  # noqa: E402
from vssl.io import atomic_path, write_json, write_text  # noqa: E402

METHODS = ("vssl", "byol", "simclr", "mocov3", "barlow_twins")
FLOOR = "random"
# Ablation name -> the overrides that turn VSSL into it (config name: vssl_<ablation>).
ABLATIONS: dict[str, tuple[str, ...]] = {
    "gaussian_likelihood": ("methods.vssl.likelihood=gaussian",),
    "gaussian_kl": ("methods.vssl.kl=gaussian",),
    "no_kl": ("methods.vssl.beta=0",),
    "no_sampling": ("methods.vssl.sample=false",),
    "standard_normal_prior": ("methods.vssl.prior=standard_normal",),
}
DEFAULT_METRICS = ("knn20_top1", "linear_top1")
METRIC_LABELS = {"knn20_top1": "kNN-20 top-1", "linear_top1": "Linear top-1"}
SELECT_METRICS = ("mean", "knn20_top1", "linear_top1")
EXIT_NONFINITE = 3  # `vssl pretrain`'s exit status for a non-finite loss


class StudyError(RuntimeError):
    """A study that cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class Config:
    """One bar of the study: a method plus the overrides that make it (empty for a method)."""

    name: str
    method: str
    overrides: tuple[str, ...] = ()
    ablation: str | None = None


@dataclass
class RunSpec:
    """One (config, seed[, lr]) pipeline: its overrides and where each stage writes."""

    config: Config
    seed: int
    base_lr: float | None
    lr_source: str  # "default" | "tuned" | "inherited" | "grid" | "edge" | "n/a"
    overrides: list[str]
    run_dir: Path
    feat_dir: Path
    probe_json: Path
    record: Path
    log_stem: Path
    tune: bool = False
    lr_factor: float | None = None
    val_dir: Path | None = None

    @property
    def label(self) -> str:
        lr = f" lr={self.base_lr:g}" if self.tune and self.base_lr is not None else ""
        return f"{self.config.name}/seed{self.seed}{lr}"


# ---------------------------------------------------------------------------------------------
# planning


def select_configs(methods: Sequence[str], ablations: Sequence[str]) -> list[Config]:
    """The study's configs in bar order: methods, then VSSL ablations (``vssl_<name>``).

    Unknown names raise :class:`StudyError` listing the known ones.
    """
    known_methods = (*METHODS, FLOOR)
    bad = [m for m in methods if m not in known_methods]
    if bad:
        raise StudyError(f"unknown method(s) {bad}; known: {', '.join(known_methods)}")
    bad = [a for a in ablations if a not in ABLATIONS]
    if bad:
        raise StudyError(f"unknown ablation(s) {bad}; known: {', '.join(ABLATIONS)}")
    configs = [Config(m, m) for m in dict.fromkeys(methods)]
    configs += [
        Config(f"vssl_{a}", "vssl", ABLATIONS[a], ablation=a) for a in dict.fromkeys(ablations)
    ]
    return configs


def budget_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides every run shares: the budget, then the user's own ``--set``.

    The kNN monitor is off (``pretrain.knn_every=0``): the final kNN probe measures the same
    thing once, and the monitor's extra pass over the train images costs CPU time. With
    ``--batched-augment`` the BYOL two-view recipe runs batched (kornia) instead of per sample:
    measured ~5x faster on this CPU, and the same for every config.
    """
    over = [
        f"pretrain.epochs={args.epochs}",
        f"data.train_subset={args.train_subset}",
        f"backbone.width={args.width}",
        "pretrain.knn_every=0",
    ]
    if args.batched_augment:
        over.append("pretrain.gpu_augment=true")
    if args.batch_size is not None:
        over.append(f"pretrain.batch_size={args.batch_size}")
    if args.test_subset is not None:
        over.append(f"data.test_subset={args.test_subset}")
    return over + list(args.overrides)


def lr_override(method: str, lr: float) -> str:
    """The override that sets a method's own base learning rate."""
    return f"methods.{method}.optimizer.base_lr={_fmt_lr(lr)}"


def default_lr(params: Params, method: str) -> float:
    """The method's base lr after the profile and overrides (its `optimizer` block wins)."""
    return float(params.optimizer_cfg(method)["base_lr"])


def load_tuned(path: Path) -> dict[str, float]:
    """``{config name: chosen base lr}`` from a ``tuning.json`` written by ``--tune``."""
    try:
        data = json.loads(path.read_text())
        return {k: float(v) for k, v in data["chosen"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StudyError(f"{path}: not a tuning.json written by --tune ({e})") from None


def tuned_lr(config: Config, tuned: dict[str, float]) -> float | None:
    """A config's tuned lr: its own, else (ablations) its method's, else None."""
    if config.name in tuned:
        return tuned[config.name]
    return tuned.get(config.method)


def _fmt_lr(lr: float) -> str:
    """6 significant digits in positional notation (``0.3 * 3`` -> ``0.9``; YAML reads it back
    as a number, which it would not do for ``1e-05``)."""
    return np.format_float_positional(float(f"{lr:.6g}"), trim="-")


def tune_run_name(seed: int, lr: float) -> str:
    """The folder name of one tuning-grid run (``seed0-lr0.3``)."""
    return f"seed{seed}-lr{_fmt_lr(lr)}"


def run_dir(top: Path, config: str, sub: str) -> Path:
    """Where ``vssl pretrain`` of one run writes (``top`` = ``--out`` or ``--out/tune``)."""
    return top / "runs" / config / sub


def record_path(top: Path, config: str, sub: str) -> Path:
    """One run's record: overrides, lr, status, wall time per stage."""
    return top / "records" / config / f"{sub}.json"


def plan_runs(
    args: argparse.Namespace,
    configs: Sequence[Config],
    base: Params,
    tuned: dict[str, float],
    extra_factors: dict[str, list[float]] | None = None,
) -> list[RunSpec]:
    """Every run of the study (or of the tuning grid with ``args.tune``), in execution order.

    ``extra_factors`` (tuning only): lr factors tried for a config beyond ``--lr-factors``
    (:func:`edge_extensions`); they come after the grid's own runs.

    Study order is seed-major (all configs of seed 0 first) so a partial study already has one
    complete row per config; within a seed the trainable configs come first, so the first run
    calibrates the time estimate, and the floor last.
    """
    out: Path = args.out
    common = budget_overrides(args)
    runs: list[RunSpec] = []
    ordered = [c for c in configs if c.method != FLOOR] + [c for c in configs if c.method == FLOOR]

    def spec(
        config: Config,
        seed: int,
        lr: float | None,
        source: str,
        sub: str,
        factor: float | None = None,
    ) -> RunSpec:
        over = list(common) + list(config.overrides)
        if lr is not None:
            over.append(lr_override(config.method, lr))
        top = out / "tune" if args.tune else out
        return RunSpec(
            config=config,
            seed=seed,
            base_lr=lr,
            lr_source=source,
            overrides=over,
            run_dir=run_dir(top, config.name, sub),
            feat_dir=top / "features" / config.name / sub,
            probe_json=top / "probes" / config.name / f"{sub}.json",
            record=record_path(top, config.name, sub),
            log_stem=top / "logs" / config.name / sub,
            tune=args.tune,
            lr_factor=factor,
            val_dir=top / "features" / config.name / f"{sub}-val" if args.tune else None,
        )

    if args.tune:
        for config in ordered:
            if config.method == FLOOR:
                continue  # nothing to tune: the floor is never trained
            lr0 = default_lr(base, config.method)
            for f in args.lr_factors:
                lr = lr0 * f
                sub = tune_run_name(args.tune_seed, lr)
                runs.append(spec(config, args.tune_seed, lr, "grid", sub, factor=f))
        for config in ordered:
            for f in (extra_factors or {}).get(config.name, []):
                lr = default_lr(base, config.method) * f
                sub = tune_run_name(args.tune_seed, lr)
                runs.append(spec(config, args.tune_seed, lr, "edge", sub, factor=f))
        return runs

    for seed in args.seeds:
        for config in ordered:
            if config.method == FLOOR:
                runs.append(spec(config, seed, None, "n/a", f"seed{seed}"))
                continue
            lr = tuned_lr(config, tuned)
            if lr is None:
                runs.append(
                    spec(config, seed, default_lr(base, config.method), "default", f"seed{seed}")
                )
            else:
                # An ablation not tuned itself runs at its method's tuned lr.
                source = "tuned" if config.name in tuned else "inherited"
                runs.append(spec(config, seed, lr, source, f"seed{seed}"))
    return runs


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def validate_plan(args: argparse.Namespace, runs: Sequence[RunSpec]) -> None:
    """Everything that can fail cheaply, before the first run: every config resolves and
    validates (typos in ``--set`` included), the dataset is known and its files are there, the
    requested metrics are produced by the probe, and no existing record in ``--out`` belongs to
    a different configuration."""
    from vssl.data import get_spec, source_files

    seen: set[tuple[str, ...]] = set()
    for run in runs:
        key = tuple(run.overrides)
        if key in seen:
            continue
        seen.add(key)
        try:
            params = load_params(args.params, profile=args.profile, overrides=run.overrides)
        except ConfigError as e:
            raise StudyError(f"config {run.config.name}: {e}") from None
    params.check_dataset(args.dataset)
    spec = get_spec(args.dataset, params)
    files = source_files(spec, params)
    if not files or not all(p.exists() for p in files):
        raise StudyError(
            f"dataset {args.dataset!r} not found under {params.data_root_path()} (expected "
            f"{spec.location}); set VSSL_DATA_ROOT or run `vssl prepare --dataset {args.dataset}`"
        )
    produced = [f"{p}_top{t}" for p in ["linear", *(f"knn{k}" for k in params.probe.knn.k)]
                for t in (1, 5)]  # fmt: skip
    wanted = list(args.metrics) + ([] if args.select_metric == "mean" else [args.select_metric])
    bad = [m for m in wanted if m not in produced]
    if bad:
        raise StudyError(
            f"metric(s) {bad} are not produced by the probe (probe.knn.k = "
            f"{params.probe.knn.k}); known: {', '.join(produced)}"
        )
    for run in runs:
        rec = _read_json(run.record)
        if rec is not None and rec.get("overrides") != run.overrides:
            raise StudyError(
                f"{run.record} was written for other settings:\n  recorded: "
                f"{rec.get('overrides')}\n  now:      {run.overrides}\n"
                "use another --out (or delete that folder) to run a different study"
            )


# ---------------------------------------------------------------------------------------------
# running


@dataclass
class Eta:
    """Wall-time bookkeeping: the estimate after the first run and a running ETA.

    A trainable run is estimated by the mean of the trainable runs so far; a ``random`` run,
    until one is measured, by a trainable run's wall time minus its training time (the floor
    runs the same extraction and probes but never trains).
    """

    start: float = field(default_factory=time.perf_counter)
    trained: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    announced: bool = False

    def add(self, run: RunSpec, seconds: float, train_s: float | None) -> None:
        if run.config.method == FLOOR:
            self.floor.append(seconds)
        else:
            self.trained.append(seconds)
            if train_s is not None:
                self.overhead.append(max(seconds - train_s, 0.0))

    def remaining(self, todo: Sequence[RunSpec]) -> float | None:
        n_floor = sum(r.config.method == FLOOR for r in todo)
        n_trained = len(todo) - n_floor
        per_trained = float(np.mean(self.trained)) if self.trained else None
        if self.floor:
            per_floor = float(np.mean(self.floor))
        elif self.overhead:
            per_floor = float(np.mean(self.overhead))
        else:
            per_floor = per_trained
        if (n_trained and per_trained is None) or (n_floor and per_floor is None):
            return None
        return n_trained * (per_trained or 0.0) + n_floor * (per_floor or 0.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def _stage(
    run: RunSpec, stage: str, cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> tuple[int, float]:
    """Run one stage as a subprocess; its output goes (atomically) to the run's stage log."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log = run.log_stem.parent / f"{run.log_stem.name}.{stage}.log"
    write_text(log, f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}\n[exit {proc.returncode}]\n")
    if proc.returncode not in ok:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise StudyError(
            f"{run.label}: `vssl {stage}` failed (exit {proc.returncode}); log: {log}\n{tail}"
        )
    return proc.returncode, seconds


def carve_validation(feat_dir: Path, val_dir: Path, val_fraction: float, seed: int) -> dict:
    """Split the TRAIN features of ``feat_dir`` into ``val_dir/train.npz`` (fit part) and
    ``val_dir/test.npz`` (the validation part, stratified and seeded, ``round(f * N)`` rows),
    then delete ``feat_dir/test.npz`` unread so tuning can never look at the test split."""
    from vssl.data import stratified_split
    from vssl.eval.features import FeatureSet, load_features, save_features, write_meta

    train = load_features(feat_dir / "train.npz")
    n_val = max(1, round(val_fraction * train.n))
    fit_idx, val_idx = stratified_split(train.labels, n_val, seed)
    meta = dict(train.meta)
    meta.update(
        split="validation carved from train (tuning)",
        val_fraction=val_fraction,
        val_seed=seed,
        n_train=int(fit_idx.size),
        n_test=int(val_idx.size),
    )

    def rows(a: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
        return None if a is None else a[idx]

    for name, idx in (("train", fit_idx), ("test", val_idx)):
        part = FeatureSet(
            train.features[idx],
            train.labels[idx],
            rows(train.mu, idx),
            rows(train.logvar, idx),
            meta,
        )
        save_features(val_dir / f"{name}.npz", part)
    write_meta(val_dir, meta)
    (feat_dir / "test.npz").unlink(missing_ok=True)
    return {"n_fit": int(fit_idx.size), "n_val": int(val_idx.size)}


def tuned_pretraining(run: RunSpec, args: argparse.Namespace) -> Path | None:
    """The finished tuning run whose pretraining *is* this study run's, else None.

    The tuning grid pretrains seed ``--tune-seed`` at every lr on the same train images with the
    same overrides; the study run of that seed at the chosen lr is therefore the same
    (deterministic) computation. It is matched on the recorded overrides, not assumed, and only
    the pretraining is shared: the study extracts and probes again (tuning deleted its test
    features unread). Off with ``--no-reuse-tuning``.
    """
    if args.tune or not args.reuse_tuning or run.lr_source != "tuned" or run.base_lr is None:
        return None
    if run.seed != args.tune_seed or (run.run_dir / "checkpoint.pt").exists():
        return None
    sub = tune_run_name(run.seed, run.base_lr)
    src = run_dir(args.out / "tune", run.config.name, sub)
    rec = _read_json(record_path(args.out / "tune", run.config.name, sub)) or {}
    if rec.get("status") != "done" or rec.get("overrides") != run.overrides:
        return None
    return src if (src / "checkpoint.pt").is_file() else None


def copy_run_dir(src: Path, dst: Path) -> None:
    """Copy a finished pretraining folder; the copy appears complete or not at all."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def execute(run: RunSpec, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """pretrain -> extract -> (tuning: carve validation) -> probe for one run; returns the
    record (status, wall time per stage) after writing it."""
    py = [sys.executable, "-m", "vssl"]
    params_opts = ["--params", str(args.params), "--profile", args.profile]
    sets = [x for o in run.overrides for x in ("--set", o)]
    record: dict[str, Any] = {
        "config": run.config.name,
        "method": run.config.method,
        "ablation": run.config.ablation,
        "seed": run.seed,
        "base_lr": run.base_lr,
        "lr_source": run.lr_source,
        "lr_factor": run.lr_factor,
        "tune": run.tune,
        "overrides": run.overrides,
        "status": "running",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(run.record, record)
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    shared = tuned_pretraining(run, args)
    if shared is not None:
        t1 = time.perf_counter()
        copy_run_dir(shared, run.run_dir)
        rc, times["pretrain_copy"] = 0, time.perf_counter() - t1
        record["pretrain_reused_from"] = str(shared.relative_to(args.out))
    else:
        resume = (run.run_dir / "checkpoint.pt").exists()
        cmd = py + ["pretrain", *params_opts, "--dataset", args.dataset]
        cmd += ["--method", run.config.method, "--seed", str(run.seed)]
        cmd += ["--out", str(run.run_dir), *sets, "--no-progress"]
        cmd += ["--resume" if resume else "--overwrite"]
        rc, times["pretrain"] = _stage(run, "pretrain", cmd, env, ok=(0, EXIT_NONFINITE))
    if rc == EXIT_NONFINITE:
        record.update(status="nonfinite", seconds=times, run_s=time.perf_counter() - t0)
        write_json(run.record, record)
        return record

    cmd = py + ["extract", "--checkpoint", str(run.run_dir / "checkpoint.pt")]
    cmd += ["--dataset", args.dataset, "--out", str(run.feat_dir)]
    _, times["extract"] = _stage(run, "extract", cmd, env)

    feats = run.feat_dir
    if run.tune:
        assert run.val_dir is not None
        record["validation"] = carve_validation(
            run.feat_dir, run.val_dir, args.val_fraction, args.val_seed
        )
        feats = run.val_dir
    cmd = py + ["probe", "--features", str(feats), "--out", str(run.probe_json), *params_opts]
    cmd += [x for o in budget_overrides(args) for x in ("--set", o)]
    _, times["probe"] = _stage(run, "probe", cmd, env)

    metrics = _read_json(run.run_dir / "metrics.json") or {}
    record.update(
        status="done",
        seconds=times,
        run_s=time.perf_counter() - t0,
        train_time_s=metrics.get("train_time_s"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json(run.record, record)
    return record


def is_done(run: RunSpec, retry_failed: bool = False) -> bool:
    """A run is done when its probe JSON exists (or it recorded a non-finite loss, which a rerun
    would reproduce, unless ``retry_failed``)."""
    if run.probe_json.exists():
        return True
    rec = _read_json(run.record) or {}
    return rec.get("status") == "nonfinite" and not retry_failed


def _run_line(run: RunSpec, rec: dict[str, Any], metrics: Sequence[str]) -> str:
    stages = " ".join(f"{k} {v:.0f}s" for k, v in rec["seconds"].items())
    if rec["status"] == "done":
        res = _read_json(run.probe_json) or {}
        split = "val" if run.tune else "test"
        note = " ".join(
            f"{split} {m}={res[m]:.1f}" for m in metrics if isinstance(res.get(m), (int, float))
        )
    else:
        note = f"[{rec['status'].upper()}: loss not finite]"
    return f"{run.label}: {rec['run_s']:.0f} s ({stages})  {note}"


def run_all(
    runs: Sequence[RunSpec], args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    """Execute (or skip) every run, ``args.jobs`` at a time, printing the wall time of each run,
    the estimate of the total after the first run and a running ETA. Returns timing totals.

    With ``jobs`` parallel runs the time still to go is estimated as ``sum(estimates) / jobs``.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    eta = Eta()
    todo = [r for r in runs if not is_done(r, args.retry_failed)]
    skipped = len(runs) - len(todo)
    if skipped:
        print(f"resume: {skipped} of {len(runs)} runs already done, skipped")
    n = len(todo)
    queue = list(enumerate(todo))
    pending: dict[Any, tuple[int, RunSpec]] = {}
    # Threads only wait on subprocesses; one pool slot per concurrent run.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        while queue or pending:
            while queue and len(pending) < args.jobs:
                i, run = queue.pop(0)
                print(f"[{i + 1}/{n}] {run.label} ...", flush=True)
                pending[pool.submit(execute, run, args, env)] = (i, run)
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i, run = pending.pop(fut)
                try:
                    rec = fut.result()
                except BaseException:
                    queue.clear()  # start no new run; the pool lets the ones in flight finish
                    raise
                if "pretrain_reused_from" not in rec:  # a copy says nothing about run cost
                    eta.add(run, rec["run_s"], rec.get("train_time_s"))
                print(f"[{i + 1}/{n}] {_run_line(run, rec, args.metrics)}", flush=True)
                rest = [r for _, r in queue] + [r for _, r in pending.values()]
                left = eta.remaining(rest)
                if left is None or not rest:
                    continue
                left /= args.jobs
                total = eta.elapsed() + left
                finish = datetime.now() + pd.Timedelta(seconds=left)
                if not eta.announced:
                    eta.announced = True
                    print(
                        f"ESTIMATE from the first run: {n} runs take ~{_minutes(total)} in all "
                        f"(~{_minutes(left)} to go, done ~{finish:%H:%M}); Ctrl-C now to change "
                        "the budget (a rerun resumes)",
                        flush=True,
                    )
                    if args.budget_minutes and total > 60 * args.budget_minutes:
                        print(
                            f"WARNING: that exceeds --budget-minutes {args.budget_minutes:g}; "
                            "reduce --epochs / --train-subset / --width",
                            flush=True,
                        )
                else:
                    print(
                        f"    elapsed {_minutes(eta.elapsed())}, "
                        f"ETA {_minutes(left)} (~{finish:%H:%M})",
                        flush=True,
                    )
    return {"executed": n, "skipped": skipped, "wall_s": eta.elapsed()}


# ---------------------------------------------------------------------------------------------
# results


def collect_results(runs: Sequence[RunSpec]) -> pd.DataFrame:
    """One row per run: identity, lr, status, every probe number, pretraining summary, times."""
    rows = []
    for run in runs:
        rec = _read_json(run.record) or {}
        probe = _read_json(run.probe_json) or {}
        metrics = _read_json(run.run_dir / "metrics.json") or {}
        status = rec.get("status", "done" if probe else "missing")
        row: dict[str, Any] = {
            "config": run.config.name,
            "method": run.config.method,
            "ablation": run.config.ablation or "",
            "seed": run.seed,
            "base_lr": run.base_lr,
            "lr_source": run.lr_source,
            "status": status if probe or status == "nonfinite" else "missing",
        }
        row.update({k: v for k, v in probe.items() if not isinstance(v, (list, dict))})
        row.update(
            final_loss=metrics.get("loss"),
            online_probe_top1=metrics.get("online_probe_top1"),
            images_per_second=metrics.get("images_per_second"),
            train_time_s=metrics.get("train_time_s"),
        )
        row.update({f"{k}_s": v for k, v in (rec.get("seconds") or {}).items()})
        row["run_s"] = rec.get("run_s")
        row["pretrain_reused_from"] = rec.get("pretrain_reused_from", "")
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(
    results: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, floor: str = FLOOR
) -> pd.DataFrame:
    """Per config (in first-appearance order): ``n_seeds`` (finished runs), ``n_failed``
    (non-finite loss), and for each metric ``<m>_mean``, ``<m>_std`` (sample std, ddof=1; NaN
    for one seed) and ``<m>_delta = <m>_mean - mean over the floor's seeds`` (NaN without a
    floor). Runs that did not finish do not enter the means."""
    order = list(dict.fromkeys(results["config"]))
    done = results[results["status"] == "done"]
    floor_mean = {
        m: done.loc[done["method"] == floor, m].mean() if m in done else math.nan for m in metrics
    }
    rows = []
    for config in order:
        part = results[results["config"] == config]
        ok = done[done["config"] == config]
        row: dict[str, Any] = {
            "config": config,
            "method": part["method"].iloc[0],
            "ablation": part["ablation"].iloc[0],
            "base_lr": part["base_lr"].iloc[0],
            "lr_source": part["lr_source"].iloc[0],
            "n_seeds": len(ok),
            "n_failed": int((part["status"] == "nonfinite").sum()),
        }
        for m in metrics:
            vals = ok[m].astype(float) if m in ok else pd.Series(dtype=float)
            mean = vals.mean() if len(vals) else math.nan
            row[f"{m}_mean"] = mean
            row[f"{m}_std"] = vals.std(ddof=1) if len(vals) > 1 else math.nan
            row[f"{m}_delta"] = mean - floor_mean[m]
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, std: float) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{mean:.1f} ± {std:.1f}" if std is not None and math.isfinite(std) else f"{mean:.1f}"


def _delta(d: float) -> str:
    return "–" if d is None or not math.isfinite(d) else f"{d:+.1f}"


def summary_markdown(
    summary: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    floor: str = FLOOR,
    caption: str | None = None,
) -> str:
    """The summary as a GitHub markdown table (for docs/benchmarks.md): one row per config,
    ``mean ± std`` over seeds (top-1 %, std = sample std) and ``Δ`` = mean minus the floor's
    mean for each metric, the lr used and the number of seeds (failed runs noted)."""
    head = ["Config", "base lr"]
    for m in metrics:
        label = METRIC_LABELS.get(m, m)
        head += [f"{label} (%)", f"Δ vs {floor}"]
    head.append("seeds")
    lines = []
    if caption:
        lines += [caption, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for _, r in summary.iterrows():
        name = r["config"]
        if r.get("ablation"):
            name = f"vssl − {r['ablation'].replace('_', ' ')}"
        lr = r.get("base_lr")
        lr_txt = "–" if lr is None or not math.isfinite(float(lr)) else f"{float(lr):.3g}"
        if r.get("lr_source") == "tuned":
            lr_txt += " (tuned)"
        elif r.get("lr_source") == "inherited":
            lr_txt += f" ({r.get('method')}'s)"
        cells = [name, lr_txt]
        for m in metrics:
            cells.append(_pm(r[f"{m}_mean"], r[f"{m}_std"]))
            cells.append("(floor)" if r["method"] == floor else _delta(r[f"{m}_delta"]))
        seeds = str(int(r["n_seeds"]))
        if r.get("n_failed"):
            seeds += f" ({int(r['n_failed'])} diverged)"
        cells.append(seeds)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def quality_figure(
    results: pd.DataFrame,
    path: Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    title: str = "",
    floor: str = FLOOR,
) -> Path:
    """Bars: mean top-1 per config and metric over seeds; error bars: one (sample) std; dashed
    lines: the floor's mean per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = results[results["status"] == "done"]
    long = done.melt(
        id_vars=["config", "method", "seed"],
        value_vars=[m for m in metrics if m in done],
        var_name="probe",
        value_name="top1",
    )
    long["probe"] = long["probe"].map(lambda m: METRIC_LABELS.get(m, m))
    order = list(dict.fromkeys(results["config"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(order) + 2), 4.2))
    if long.empty:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no finished run", ha="center", va="center")
    else:
        sns.barplot(
            data=long,
            x="config",
            y="top1",
            hue="probe",
            order=order,
            errorbar="sd",
            capsize=0.15,
            ax=ax,
        )
        palette = sns.color_palette()
        for i, m in enumerate(metrics):
            ref = done.loc[done["method"] == floor, m].mean() if m in done else math.nan
            if math.isfinite(ref):
                ax.axhline(ref, ls="--", lw=1, color=palette[i % len(palette)], alpha=0.7)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_xlabel(f"error bars: ±1 std over seeds; dashed: mean of {floor} (the floor)")
        ax.set_ylim(0, min(100, long["top1"].max() * 1.15 + 2))
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_ha("right")
        ax.legend(title="", loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def val_score(trials: pd.DataFrame, metric: str = "mean") -> pd.Series:
    """The selection score of each trial: ``(knn20_top1 + linear_top1) / 2`` for ``mean``,
    else the named column; NaN for a trial that did not finish."""

    def col(name: str) -> pd.Series:
        # A grid where every run diverged has no probe columns at all.
        return trials[name].astype(float) if name in trials else pd.Series(math.nan, trials.index)

    score = (col("knn20_top1") + col("linear_top1")) / 2 if metric == "mean" else col(metric)
    return score.where(trials["status"] == "done")


def select_lrs(trials: pd.DataFrame, metric: str = "mean") -> dict[str, dict[str, Any]]:
    """Per config, the trial with the best validation score (``mean`` = average of val kNN-20
    and val linear top-1); ties go to the lr nearest the default (``|log f|`` smallest)."""
    chosen: dict[str, dict[str, Any]] = {}
    done = trials[trials["status"] == "done"].copy()
    if done.empty:
        return chosen
    done["score"] = val_score(done, metric)
    done["dist"] = np.abs(np.log(done["lr_factor"].astype(float)))
    for config, part in done.groupby("config", sort=False):
        best = part.sort_values(["score", "dist"], ascending=[False, True]).iloc[0]
        chosen[str(config)] = {
            "base_lr": float(best["base_lr"]),
            "lr_factor": float(best["lr_factor"]),
            "val_score": float(best["score"]),
        }
    return chosen


def edge_extensions(
    trials: pd.DataFrame, lr_factors: Sequence[float], metric: str = "mean"
) -> dict[str, list[float]]:
    """Configs whose best grid lr is the grid's smallest or largest, each with one more factor
    one step further out: ``edge * (edge / neighbour)``, rounded to one significant digit
    (x{0.1, 0.3, 1, 3} -> 0.03 below, 9 above). The same rule for every config, applied once,
    so every method gets the same chance to leave the grid and no more."""
    grid = sorted(set(float(f) for f in lr_factors))
    if len(grid) < 2:
        return {}
    on_grid = trials[trials["lr_factor"].astype(float).isin(grid)]
    out: dict[str, list[float]] = {}
    for config, c in select_lrs(on_grid, metric).items():
        f = c["lr_factor"]
        if f == grid[0]:
            out[config] = [float(f"{f * f / grid[1]:.1g}")]
        elif f == grid[-1]:
            out[config] = [float(f"{f * f / grid[-2]:.1g}")]
    return out


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="cifar10_mini | fashion_mnist | ...")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, required=True, help="pretraining epochs, every config")
    p.add_argument("--train-subset", type=int, required=True, help="pretraining/probe images")
    p.add_argument("--width", type=int, required=True, help="ResNet-18 base width")
    p.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    p.add_argument("--test-subset", type=int, default=None, help="default: the profile's")
    p.add_argument("--out", type=Path, required=True, help="study folder")
    p.add_argument(
        "--methods",
        nargs="+",
        default=[*METHODS, FLOOR],
        help=f"from: {' '.join((*METHODS, FLOOR))}",
    )
    p.add_argument(
        "--ablations",
        nargs="*",
        default=None,
        help=f"VSSL ablations from: {' '.join(ABLATIONS)} (default: all; with --tune: none)",
    )
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--profile", default="quick", help="base profile of every run")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for every run (repeatable), e.g. pretrain.warmup_epochs=2",
    )
    p.add_argument("--tune", action="store_true", help="run the lr grid on a validation split")
    p.add_argument("--lr-factors", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    p.add_argument(
        "--extend-edges",
        action="store_true",
        help="with --tune: a config whose best lr is at the grid's edge gets one more lr, "
        "one grid step further out (the same rule for every config, applied once)",
    )
    p.add_argument("--tune-seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--val-seed", type=int, default=0, help="seed of the validation carve-out")
    p.add_argument("--select-metric", choices=SELECT_METRICS, default="mean")
    p.add_argument(
        "--tuned",
        type=Path,
        default=None,
        help="tuning.json to take lrs from (default: OUT/tuning.json when present)",
    )
    p.add_argument("--no-tuned", action="store_true", help="ignore tuning.json: default lrs")
    p.add_argument(
        "--reuse-tuning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the --tune-seed run at the chosen lr takes its pretraining from the tuning grid "
        "(the same computation; matched on the recorded overrides)",
    )
    p.add_argument("--retry-failed", action="store_true", help="rerun non-finite-loss runs")
    p.add_argument("--budget-minutes", type=float, default=90, help="warn above this estimate")
    p.add_argument("--mlflow-uri", default=None, help="default: sqlite:///OUT/mlflow.db")
    p.add_argument(
        "--jobs", type=int, default=1, help="runs at a time (2 on an idle 2-core machine)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads per run (OMP_NUM_THREADS); 0: inherit the environment",
    )
    p.add_argument(
        "--batched-augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pretrain.gpu_augment=true: the same two-view recipe, batched (kornia) on the CPU",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = p.parse_args(argv)
    if args.ablations is None:
        args.ablations = [] if args.tune else list(ABLATIONS)
    elif args.ablations == ["none"]:
        args.ablations = []
    elif args.ablations == ["all"]:
        args.ablations = list(ABLATIONS)
    if not 0 < args.val_fraction < 1:
        p.error("--val-fraction must lie in (0, 1)")
    if any(f <= 0 for f in args.lr_factors):
        p.error("--lr-factors must be positive")
    if args.jobs < 1 or args.threads < 0:
        p.error("--jobs must be >= 1 and --threads >= 0")
    args.out = args.out.resolve()
    args.params = args.params.resolve()
    args.tuned = args.tuned.resolve() if args.tuned else None
    return args


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    # One SQLite store per study (the tracking module retries on "database is locked").
    env["MLFLOW_TRACKING_URI"] = args.mlflow_uri or f"sqlite:///{args.out / 'mlflow.db'}"
    if args.threads:
        # Small convolutions gain little from a second thread, and on a shared 2-core machine
        # oversubscribed OpenMP threads spin-wait: measured 10-20x slower steps.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    return env


def init_mlflow_store(uri: str) -> None:
    """Create the store's tables once, before parallel runs would race to migrate it."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _budget_text(args: argparse.Namespace, params: Params) -> str:
    pc = params.pretrain
    return (
        f"{args.dataset}: ResNet-18 width {params.backbone.width}, {pc.epochs} epochs, "
        f"{params.data.train_subset} train images, batch {pc.batch_size}, "
        f"profile {args.profile}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The stages run in the repository root (params.yaml's relative data_root is resolved from
    # there); the in-process checks must see the same paths.
    os.chdir(ROOT)
    try:
        configs = select_configs(args.methods, args.ablations)
        base = load_params(args.params, profile=args.profile, overrides=budget_overrides(args))
        tuned: dict[str, float] = {}
        tuned_path = args.tuned or (args.out / "tuning.json")
        if not args.tune and not args.no_tuned and tuned_path.exists():
            tuned = load_tuned(tuned_path)
            print(f"learning rates from {tuned_path}: {tuned}")
        elif args.tuned is not None and not args.tuned.exists():
            raise StudyError(f"--tuned {args.tuned}: no such file")
        runs = plan_runs(args, configs, base, tuned)
        if not runs:
            raise StudyError("nothing to run (--tune needs a config other than random)")
        validate_plan(args, runs)
    except (StudyError, ConfigError) as e:
        print(f"quality: error: {e}", file=sys.stderr)
        return 2

    budget = _budget_text(args, base)
    mode = "tuning" if args.tune else "study"
    if args.tune:
        configs = [c for c in configs if c.method != FLOOR]
    print(f"quality {mode}: {budget}; {len(configs)} configs, {len(runs)} runs -> {args.out}")
    if args.dry_run:
        for r in runs:
            state = "done" if is_done(r, args.retry_failed) else "todo"
            print(f"  [{state}] {r.label}: --set {' --set '.join(r.overrides)}")
        return 0

    env = _env(args)
    if args.jobs > 1:
        init_mlflow_store(env["MLFLOW_TRACKING_URI"])
    try:
        timing = run_all(runs, args, env)
    except StudyError as e:
        print(f"quality: error: {e}", file=sys.stderr)
        return 1
    if args.tune and args.extend_edges:
        grid_trials = collect_results(runs).assign(lr_factor=[r.lr_factor for r in runs])
        extra = edge_extensions(grid_trials, args.lr_factors, args.select_metric)
        if extra:
            print(f"best lr at the grid's edge, one more step: {extra}")
            known = {r.run_dir for r in runs}
            runs = plan_runs(args, configs, base, tuned, extra_factors=extra)
            new = [r for r in runs if r.run_dir not in known]
            try:
                validate_plan(args, new)
                more = run_all(new, args, env)
            except StudyError as e:
                print(f"quality: error: {e}", file=sys.stderr)
                return 1
            timing = {
                "executed": timing["executed"] + more["executed"],
                "skipped": timing["skipped"] + more["skipped"],
                "wall_s": timing["wall_s"] + more["wall_s"],
            }
    results = collect_results(runs)
    summary_file = args.out / ("tuning.json" if args.tune else "study.json")
    invocations = list((_read_json(summary_file) or {}).get("invocations", []))
    invocations.append(
        {
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "executed": timing["executed"],
            "skipped": timing["skipped"],
            "wall_s": timing["wall_s"],
        }
    )
    study = {
        "mode": mode,
        "argv": sys.argv if argv is None else ["benchmarks/quality.py", *argv],
        "dataset": args.dataset,
        "budget": budget,
        "profile": args.profile,
        "common_overrides": budget_overrides(args),
        "configs": [c.__dict__ for c in configs],
        "seeds": [args.tune_seed] if args.tune else args.seeds,
        "runs": len(runs),
        "executed": timing["executed"],
        "skipped": timing["skipped"],
        "wall_s": timing["wall_s"],
        # Resumed studies: the wall time of every invocation, so the total survives a rerun.
        "invocations": invocations,
        "wall_s_total": sum(i["wall_s"] for i in invocations),
        "sum_run_s": float(pd.to_numeric(results["run_s"], errors="coerce").sum()),
        "machine": _machine(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"wall time: {_minutes(timing['wall_s'])} for {timing['executed']} runs")
    if args.tune:
        write_tuning(args, runs, results, study)
    else:
        write_study(args, results, study, budget)
    return 0


def tuning_markdown(trials: pd.DataFrame, chosen: dict[str, dict[str, Any]]) -> str:
    """What ``--tune`` tried, as a markdown table: one row per config, one cell per lr with the
    validation score (``*`` marks the choice, ``nan`` a non-finite loss)."""
    lines = ["| Config | base lr: validation score |", "|---|---|"]
    for config, part in trials.groupby("config", sort=False):
        cells = []
        for _, t in part.sort_values("base_lr").iterrows():
            mark = "*" if chosen.get(str(config), {}).get("base_lr") == t["base_lr"] else ""
            score = t.get("score")
            txt = "nan" if score is None or not math.isfinite(score) else f"{score:.1f}"
            cells.append(f"{_fmt_lr(float(t['base_lr']))}: {txt}{mark}")
        lines.append(f"| {config} | {', '.join(cells)} |")
    return "\n".join(lines) + "\n"


def write_tuning(
    args: argparse.Namespace,
    runs: Sequence[RunSpec],
    results: pd.DataFrame,
    study: dict[str, Any],
) -> None:
    """``tuning.json`` (every trial, the selection rule and the choice), ``tuning.csv`` and
    ``tuning.md``; prints the choice per config."""
    results = results.copy()
    results["lr_factor"] = [r.lr_factor for r in runs]
    chosen = select_lrs(results, args.select_metric)
    results["score"] = val_score(results, args.select_metric)
    definition = (
        "mean of val knn20_top1 and val linear_top1"
        if args.select_metric == "mean"
        else f"val {args.select_metric}"
    )
    tuning = {
        **study,
        "selection": {
            "metric": args.select_metric,
            "definition": definition,
            "split": f"stratified {args.val_fraction:g} of the train features "
            f"(seed {args.val_seed}); test features deleted unread",
            "caveat": "pretraining saw the validation images (unlabelled), as every method did; "
            "its online monitor logs test top-1 in history.csv, never read here",
            "lr_factors": args.lr_factors,
            "extend_edges": args.extend_edges,
        },
        "trials": json.loads(results.to_json(orient="records")),
        "chosen": {k: v["base_lr"] for k, v in chosen.items()},
        "chosen_detail": chosen,
    }
    write_json(args.out / "tuning.json", tuning)
    write_text(args.out / "tuning.csv", results.to_csv(index=False))
    write_text(args.out / "tuning.md", tuning_markdown(results, chosen))
    for config in dict.fromkeys(results["config"]):
        c = chosen.get(config)
        if c is None:
            print(f"  {config}: every lr diverged; the study keeps the default lr")
            continue
        print(
            f"  {config}: base_lr {c['base_lr']:.4g} (x{c['lr_factor']:g}), val {c['val_score']:.2f}"
        )
    print(f"wrote {args.out / 'tuning.json'}, tuning.csv, tuning.md")


def write_study(
    args: argparse.Namespace, results: pd.DataFrame, study: dict[str, Any], budget: str
) -> None:
    """results.csv, summary.csv, summary.md, quality.png and study.json; prints the table."""
    summary = summarize(results, args.metrics)
    write_text(args.out / "results.csv", results.to_csv(index=False))
    write_text(args.out / "summary.csv", summary.to_csv(index=False))
    caption = f"Top-1 (%) on the test split, mean ± std over seeds {args.seeds}; {budget}."
    md = summary_markdown(summary, args.metrics, caption=caption)
    write_text(args.out / "summary.md", md)
    quality_figure(results, args.out / "quality.png", args.metrics, title=budget)
    write_json(args.out / "study.json", study)
    print(md)
    names = ("results.csv", "summary.csv", "summary.md", "quality.png", "study.json")
    print(f"wrote {', '.join(names)} in {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
