"""Learning-rate tuning for the grid entries of a profile: the one part of a quality study the
pipeline cannot express.

Studies themselves run through the pipeline: a profile lists methods and variants (ablations,
or a method at a tuned lr) in its grid, ``snakemake --cores all --config profile=NAME`` (or
``dvc exp run -S profile=NAME``) trains and probes them, and ``vssl table`` writes the mean and
std over seeds with the figures (``profiles.ablations`` in params.yaml is the VSSL study).
What the pipeline cannot do is choose a learning rate without looking at the test split. This
script does, the same way for every entry:

for each entry and factor ``f`` in ``--lr-factors``, pretrain seed ``--seed`` at
``base_lr * f`` (``vssl pretrain --method ENTRY --set methods.<m>.optimizer.base_lr=...``),
extract the features, carve a seeded stratified validation split out of the TRAIN features
(``--val-fraction``; the test features are deleted unread), probe fit-part -> validation-part,
and pick per entry the lr with the best validation score (``--select-metric``; default the mean
of kNN-20 and linear top-1; ties go to the lr nearest the default). With ``--extend-edges`` an
entry whose best lr is at the grid's edge gets one more lr one grid step further out, once.

    python benchmarks/quality.py --profile ablations --entries vssl byol \\
        --lr-factors 0.3 1 3 --extend-edges --jobs 2 --out benchmarks/results/tune-ablations

Outputs under ``--out``: ``runs/ENTRY/lrF/`` (checkpoint, metrics, history), ``features/...``,
``probes/ENTRY/lrF.json``, ``logs/``, ``tuning.csv`` (one row per trial), ``tuning.md``,
``tuning.json`` (settings, trials, choice) and ``tuned_variants.yaml``: one variant per entry at
its chosen lr, to paste under ``variants:`` in params.yaml and list in a profile's grid.
A trial whose probe exists is not repeated (the folder resumes); a killed pretraining resumes
from its last completed epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SELECT_METRICS = ("mean", "knn20_top1", "linear_top1")
EXIT_NONFINITE = 3  # `vssl pretrain`'s exit status for a non-finite loss


class TuningError(RuntimeError):
    """A failed stage or bad arguments, with the log to read."""


@dataclass(frozen=True)
class Trial:
    """One (entry, lr factor) of the tuning grid and its folders under ``out``."""

    out: Path
    entry: str
    method: str
    factor: float
    base_lr: float
    source: str  # "grid" or "edge"

    @property
    def name(self) -> str:
        return f"lr{self.factor:g}"

    @property
    def override(self) -> str:
        return f"methods.{self.method}.optimizer.base_lr={self.base_lr:.6g}"

    @property
    def run_dir(self) -> Path:
        return self.out / "runs" / self.entry / self.name

    @property
    def features(self) -> Path:
        return self.out / "features" / self.entry / self.name

    @property
    def validation(self) -> Path:
        return self.out / "features" / self.entry / f"{self.name}-val"

    @property
    def probe(self) -> Path:
        return self.out / "probes" / self.entry / f"{self.name}.json"

    def log(self, stage: str) -> Path:
        return self.out / "logs" / self.entry / f"{self.name}.{stage}.log"


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


def val_score(trials: pd.DataFrame, metric: str = "mean") -> pd.Series:
    """The selection score of each trial: ``(knn20_top1 + linear_top1) / 2`` for ``mean``,
    else the named column; NaN for a trial that did not finish."""

    def col(name: str) -> pd.Series:
        # A grid where every run diverged has no probe columns at all.
        return trials[name].astype(float) if name in trials else pd.Series(math.nan, trials.index)

    score = (col("knn20_top1") + col("linear_top1")) / 2 if metric == "mean" else col(metric)
    return score.where(trials["status"] == "done")


def select_lrs(trials: pd.DataFrame, metric: str = "mean") -> dict[str, dict[str, Any]]:
    """Per entry, the trial with the best validation score; ties go to the lr nearest the
    default (``|log f|`` smallest)."""
    chosen: dict[str, dict[str, Any]] = {}
    done = trials[trials["status"] == "done"].copy()
    if done.empty:
        return chosen
    done["score"] = val_score(done, metric)
    done["dist"] = np.abs(np.log(done["lr_factor"].astype(float)))
    for entry, part in done.groupby("entry", sort=False):
        best = part.sort_values(["score", "dist"], ascending=[False, True]).iloc[0]
        chosen[str(entry)] = {
            "base_lr": float(best["base_lr"]),
            "lr_factor": float(best["lr_factor"]),
            "val_score": float(best["score"]),
        }
    return chosen


def edge_extensions(
    trials: pd.DataFrame, lr_factors: Sequence[float], metric: str = "mean"
) -> dict[str, list[float]]:
    """Entries whose best grid lr is the grid's smallest or largest, each with one more factor
    one step further out: ``edge * (edge / neighbour)``, rounded to one significant digit
    (x{0.1, 0.3, 1, 3} -> 0.03 below, 9 above). The same rule for every entry, applied once."""
    grid = sorted(set(float(f) for f in lr_factors))
    if len(grid) < 2:
        return {}
    on_grid = trials[trials["lr_factor"].astype(float).isin(grid)]
    out: dict[str, list[float]] = {}
    for entry, c in select_lrs(on_grid, metric).items():
        f = c["lr_factor"]
        if f == grid[0]:
            out[entry] = [float(f"{f * f / grid[1]:.1g}")]
        elif f == grid[-1]:
            out[entry] = [float(f"{f * f / grid[-2]:.1g}")]
    return out


def _stage(trial: Trial, stage: str, args: argparse.Namespace, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "vssl", stage, "--params", str(args.params)]
    cmd += ["--profile", args.profile, *extra]
    trial.log(stage).parent.mkdir(parents=True, exist_ok=True)
    with open(trial.log(stage), "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode not in (0, EXIT_NONFINITE if stage == "pretrain" else 0):
        raise TuningError(
            f"{trial.entry} {trial.name}: `vssl {stage}` failed; see {trial.log(stage)}"
        )
    return proc.returncode


def run_trial(trial: Trial, args: argparse.Namespace, dataset: str) -> dict[str, Any]:
    """pretrain -> extract -> carve validation -> probe; returns the trial's row."""
    row: dict[str, Any] = {
        "entry": trial.entry,
        "method": trial.method,
        "lr_factor": trial.factor,
        "base_lr": trial.base_lr,
        "lr_source": trial.source,
    }
    if not trial.probe.is_file():
        t0 = time.perf_counter()
        pre = ["--dataset", dataset, "--method", trial.entry, "--seed", str(args.seed)]
        # --resume: continue a killed trial (a fresh folder simply starts)
        pre += ["--out", str(trial.run_dir), "--set", trial.override, "--no-progress", "--resume"]
        if _stage(trial, "pretrain", args, pre) == EXIT_NONFINITE:
            return {**row, "status": "nonfinite", "seconds": time.perf_counter() - t0}
        ext = ["--checkpoint", str(trial.run_dir / "checkpoint.pt"), "--dataset", dataset]
        _stage(trial, "extract", args, [*ext, "--out", str(trial.features), "--no-mlflow"])
        carve_validation(trial.features, trial.validation, args.val_fraction, args.seed)
        probe = ["--features", str(trial.validation), "--out", str(trial.probe), "--no-mlflow"]
        _stage(trial, "probe", args, probe)
        row["seconds"] = time.perf_counter() - t0
    result = json.loads(trial.probe.read_text())
    return {**row, "status": "done", **{k: result.get(k) for k in ("knn20_top1", "linear_top1")}}


def tuning_markdown(trials: pd.DataFrame, chosen: dict[str, dict[str, Any]]) -> str:
    """One row per entry: every lr tried with its validation score, the chosen one starred."""
    lines = ["| entry | base lr: validation score |", "|---|---|"]
    scored = trials.assign(score=val_score(trials))
    for entry, part in scored.groupby("entry", sort=False):
        cells = []
        for _, t in part.sort_values("base_lr").iterrows():
            star = "*" if chosen.get(entry, {}).get("base_lr") == t["base_lr"] else ""
            val = "diverged" if t["status"] != "done" else f"{t['score']:.1f}"
            cells.append(f"{t['base_lr']:g}: {val}{star}")
        lines.append(f"| {entry} | {', '.join(cells)} |")
    return "\n".join(lines) + "\n"


def tuned_variants(chosen: dict[str, dict[str, Any]], methods: dict[str, str]) -> dict[str, Any]:
    """``variants:`` entries (``<entry>_tuned``) at the chosen lrs, for params.yaml."""
    return {
        f"{entry}_tuned": {
            "method": methods[entry],
            "set": {f"methods.{methods[entry]}.optimizer.base_lr": c["base_lr"]},
        }
        for entry, c in chosen.items()
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--profile", required=True, help="its settings and its grid's dataset")
    p.add_argument("--entries", nargs="+", required=True, help="methods or variants to tune")
    p.add_argument("--dataset", default=None, help="default: the profile grid's first dataset")
    p.add_argument("--lr-factors", nargs="+", type=float, default=[0.3, 1.0, 3.0])
    p.add_argument("--extend-edges", action="store_true")
    p.add_argument("--select-metric", choices=SELECT_METRICS, default="mean")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="trials at a time")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from vssl.config import ConfigError, load_params
    from vssl.io import write_json, write_text

    args = parse_args(argv)
    print("python benchmarks/quality.py " + " ".join(sys.argv[1:]), flush=True)
    try:
        params = load_params(args.params, profile=args.profile)
        methods = {e: params.entry_method(e) for e in args.entries}
        dataset = args.dataset or params.grid.datasets[0]
        params.check_dataset(dataset)
    except ConfigError as e:
        print(f"quality.py: error: {e}", file=sys.stderr)
        return 2
    if "random" in methods.values():
        print("quality.py: error: `random` has no learning rate", file=sys.stderr)
        return 2

    def trials_for(factors: dict[str, list[float]], source: str) -> list[Trial]:
        out = []
        for entry, fs in factors.items():
            base = params.for_entry(entry).optimizer_cfg(methods[entry])["base_lr"]
            out += [Trial(args.out, entry, methods[entry], f, base * f, source) for f in fs]
        return out

    env_threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    os.environ.update(env_threads)
    t0 = time.perf_counter()
    todo = trials_for({e: list(args.lr_factors) for e in args.entries}, "grid")
    rows: list[dict[str, Any]] = []
    for round_ in range(2):
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows += list(pool.map(lambda t: run_trial(t, args, dataset), todo))
        trials = pd.DataFrame(rows)
        if round_ or not args.extend_edges:
            break
        todo = trials_for(edge_extensions(trials, args.lr_factors, args.select_metric), "edge")
        if not todo:
            break
    chosen = select_lrs(trials, args.select_metric)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "tuning.csv", trials.to_csv(index=False))
    write_text(args.out / "tuning.md", tuning_markdown(trials, chosen))
    variants = tuned_variants(chosen, methods)
    write_text(args.out / "tuned_variants.yaml", yaml.safe_dump(variants, sort_keys=False))
    write_json(
        args.out / "tuning.json",
        {
            "profile": args.profile,
            "dataset": dataset,
            "seed": args.seed,
            "lr_factors": list(args.lr_factors),
            "selection": {
                "metric": args.select_metric,
                "val_fraction": args.val_fraction,
                "extend_edges": args.extend_edges,
            },
            "trials": trials.to_dict(orient="records"),
            "chosen": {e: c["base_lr"] for e, c in chosen.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "wall_time_s": time.perf_counter() - t0,
        },
    )
    print(tuning_markdown(trials, chosen), end="")
    print(f"variants at the chosen lrs: {args.out / 'tuned_variants.yaml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
