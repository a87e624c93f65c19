"""results/table.csv: one row per (dataset, variant), mean and std over seeds of every metric.

Inputs per run (paths from :mod:`vssl.workflow`): the probe's flat results JSON, the pretraining
``metrics.json`` (for the online probe's top-1 and the epochs trained), ``history.csv`` and the
probe's per-sample uncertainty sidecar (every run has one; only VSSL's has variances). For a metric ``m`` measured on seeds
``x_1..x_n`` the table holds

    m_mean = (1/n) sum_i x_i,    m_std = sqrt( sum_i (x_i - m_mean)^2 / (n - 1) )

(the sample standard deviation; empty for n = 1, since one seed says nothing about spread).
Metrics a method does not have (``uncertainty_error_auroc`` for non-VSSL methods) are empty;
``feature_norm_error_auroc``, the label-free baseline for it, every run has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vssl.config import Params
from vssl.io import atomic_path
from vssl.workflow import Run, grid_runs

# Probe keys that describe the evaluation rather than measure the representation.
PROBE_INFO_KEYS = ("n_train", "n_test", "feature_dim", "num_classes", "linear_weight_decay")
REQUIRED_PROBE_KEYS = ("linear_top1", "linear_top5", "n_train", "n_test", "feature_dim")
# The one training-time metric the table takes from metrics.json: the online linear probe's
# top-1 (trained alongside pretraining on detached features), under the same name.
ONLINE_KEY = "online_probe_top1"
ID_COLUMNS = ("dataset", "method", "variant", "seed")


class ReportError(RuntimeError):
    """Missing or malformed inputs of the table stage, listing every offending file."""


def _metric_order(name: str) -> tuple[int, str]:
    """Column order: linear, kNN (top-1 before top-5, small k first), online, VSSL's uncertainty,
    its label-free baseline (minus the feature norm), rest."""
    if name.startswith("linear_"):
        return (0, name)
    if name.startswith("knn") and "_top" in name:
        k, top = name[3:].split("_top", 1)
        if k.isdigit() and top.isdigit():
            return (1, f"{int(top):03d}{int(k):06d}")
    if name == ONLINE_KEY:
        return (2, name)
    if name.startswith("uncertainty_"):
        return (3, name)
    if name == "feature_norm_error_auroc":
        return (4, name)
    return (5, name)


def input_files(run: Run) -> tuple[str, ...]:
    """Every file `vssl table` reads for ``run``: probe JSON, its uncertainty sidecar (written
    for every run), metrics.json and history.csv."""
    return (run.probe, run.uncertainty, run.metrics, run.history)


def check_inputs(runs: Iterable[Run], root: Path) -> None:
    """Raise ReportError naming every missing input file (:func:`input_files`) at once."""
    missing = [p for r in runs for p in input_files(r) if not (Path(root) / p).is_file()]
    if missing:
        raise ReportError(
            f"{len(missing)} input file(s) of the table are missing (run the pipeline first: "
            "snakemake --cores all results/table.csv):\n  " + "\n  ".join(missing)
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _number(v: Any) -> float:
    """JSON value -> float (null -> NaN); anything else is an error of the writer."""
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"not a number: {v!r}")
    return float(v)


def check_identity(run: Run, record: dict[str, Any], path: str) -> None:
    """Raise ReportError when ``record`` (a probe JSON's ``source``, or metrics.json) names
    another dataset, method, variant or seed than the run whose path it was read from: a file
    copied into the wrong place would otherwise put one run's numbers in another's row. Keys a
    record lacks (files written before they were recorded) are not checked."""
    expected = {"dataset": run.dataset, "method": run.method, "variant": run.variant}
    wrong = [
        f"{k} {record[k]!r} (expected {v!r})"
        for k, v in expected.items()
        if k in record and record[k] != v
    ]
    if "seed" in record and record["seed"] != run.seed:
        wrong.append(f"seed {record['seed']!r} (expected {run.seed})")
    if wrong:
        raise ReportError(f"{path}: belongs to another run: {', '.join(wrong)}")


def load_runs(runs: list[Run], root: str | Path = ".") -> pd.DataFrame:
    """One row per run: dataset, method, variant, seed, every probe value, ``online_probe_top1``,
    ``epochs``.

    ``epochs`` is what metrics.json reports, except that a run without a single optimiser step
    (``global_step == 0``: the untrained ``random`` floor) trained 0 epochs; NaN if absent.
    """
    root = Path(root)
    check_inputs(runs, root)
    rows = []
    for r in runs:
        probe = _read_json(root / r.probe)
        lacking = [k for k in REQUIRED_PROBE_KEYS if k not in probe]
        if lacking:
            raise ReportError(f"{r.probe}: missing key(s) {', '.join(lacking)}")
        source = probe.pop("source", None)
        if source is not None and not isinstance(source, dict):
            raise ReportError(f"{r.probe}: key 'source': expected an object, got {source!r}")
        metrics = _read_json(root / r.metrics)
        check_identity(r, source or {}, r.probe)
        check_identity(r, metrics, r.metrics)
        row: dict[str, Any] = {
            "dataset": r.dataset,
            "method": r.method,
            "variant": r.variant,
            "seed": r.seed,
        }
        for k, v in probe.items():
            try:
                row[k] = _number(v)
            except TypeError as e:
                raise ReportError(f"{r.probe}: key {k!r}: {e}") from None
        try:
            row[ONLINE_KEY] = _number(metrics.get(ONLINE_KEY))
            row["epochs"] = (
                0.0 if metrics.get("global_step") == 0 else _number(metrics.get("epochs"))
            )
        except TypeError as e:
            raise ReportError(f"{r.metrics}: {e}") from None
        rows.append(row)
    return pd.DataFrame(rows)


def metric_columns(per_run: pd.DataFrame) -> list[str]:
    """The measured metrics among ``per_run``'s columns, in table order."""
    skip = set(ID_COLUMNS) | set(PROBE_INFO_KEYS) | {"epochs"}
    return sorted((c for c in per_run.columns if c not in skip), key=_metric_order)


def aggregate(per_run: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Mean and sample std over seeds per (dataset, variant), in grid order (module docstring).

    Columns: profile, dataset, method, variant, backbone, width, epochs, n_seeds, n_train,
    n_test, feature_dim, then ``<metric>_mean``, ``<metric>_std`` for every metric. ``variant``
    is the grid entry (the method's own name for a plain method).
    """
    metrics = metric_columns(per_run)
    rows = []
    for (dataset, variant), g in per_run.groupby(["dataset", "variant"], sort=False):
        # A variant may set its own backbone or epochs: describe the row by its own params.
        entry = params.for_entry(str(variant))
        row: dict[str, Any] = {
            "profile": params.profile,
            "dataset": dataset,
            "method": g["method"].iloc[0],
            "variant": variant,
            "backbone": entry.backbone.name,
            "width": entry.backbone.width,
            # Trained epochs as the runs report them; the configured number when they do not.
            "epochs": int(g["epochs"].iloc[0])
            if g["epochs"].notna().all()
            else entry.epochs_for(str(dataset)),
            "n_seeds": int(g["seed"].nunique()),
        }
        for info in ("n_train", "n_test", "feature_dim"):
            row[info] = int(g[info].iloc[0])
        for m in metrics:
            x = g[m].to_numpy(dtype=np.float64)
            x = x[~np.isnan(x)]
            row[f"{m}_mean"] = float(x.mean()) if x.size else math.nan
            row[f"{m}_std"] = float(x.std(ddof=1)) if x.size > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def build_table(params: Params, root: str | Path = ".") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-run frame, aggregated table) for the resolved profile's whole grid."""
    per_run = load_runs(grid_runs(params), root)
    return per_run, aggregate(per_run, params)


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write the table as CSV (atomic; floats with 6 significant digits, NaN as empty)."""
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
