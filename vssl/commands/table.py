"""`vssl table`: aggregate every probe of the profile's grid into results/table.csv and figures.

    vssl table --params params.yaml --profile quick --out results/table.csv
               --figures results/figures

Reads, for each (dataset, method, seed) of the grid, the files listed in vssl.workflow.Run
(probe JSON, metrics.json, history.csv, VSSL's uncertainty sidecar) under ``--root``, writes the
table (vssl.report.table) and the figures (vssl.report.figures), and logs both to an MLflow run
tagged ``stage=table`` and the profile.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vssl.cli import add_params_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_params_arguments(p)
    p.add_argument("--out", default="results/table.csv", help="table CSV (default: %(default)s)")
    p.add_argument(
        "--figures", default="results/figures", help="figures folder (default: %(default)s)"
    )
    p.add_argument(
        "--root",
        default=".",
        help="folder holding runs/ and results/probes/ (default: the current directory)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vssl.config import load_params
    from vssl.report.table import ReportError, check_inputs
    from vssl.workflow import grid_runs

    params = load_params(args.params, profile=args.profile, overrides=args.overrides)
    runs = grid_runs(params)
    root = Path(args.root)
    try:
        check_inputs(runs, root)  # before importing MLflow, seaborn and friends
    except ReportError as e:
        print(f"vssl table: error: {e}", file=sys.stderr)
        return 1

    from vssl import tracking
    from vssl.report.figures import write_figures
    from vssl.report.table import aggregate, load_runs, metric_columns, write_table

    g = params.grid
    try:
        with tracking.start_run(
            params,
            stage="table",
            # The table spans the grid: tag it with the grid's values so the compare view can
            # filter on them like on the per-run tags.
            dataset=",".join(g.datasets),
            method=",".join(g.methods),
            seed=",".join(map(str, g.seeds)),  # type: ignore[arg-type]
            run_name=f"table-{params.profile}",
        ):
            per_run = load_runs(runs, root)
            table = aggregate(per_run, params)
            write_table(table, args.out)
            figures = write_figures(per_run, runs, root, args.figures)
            tracking.log_artifact(args.out)
            for path in figures.values():
                tracking.log_artifact(path, artifact_path="figures")
            tracking.log_metrics(
                {
                    f"{row['dataset']}.{row['method']}.{m}_mean": row[f"{m}_mean"]
                    for _, row in table.iterrows()
                    for m in metric_columns(per_run)
                }
            )
    except ReportError as e:  # the run is marked FAILED; say which file is wrong
        print(f"vssl table: error: {e}", file=sys.stderr)
        return 1
    _print_summary(table)
    print(f"wrote {args.out} and {len(figures)} figures under {args.figures}")
    return 0


def _print_summary(table: Any) -> None:
    """Print the headline columns of the table (the CSV holds everything)."""
    cols = [
        c
        for c in ("dataset", "method", "n_seeds", "epochs")
        + tuple(
            f"{m}_mean" for m in ("linear_top1", "knn20_top1", "knn200_top1", "online_probe_top1")
        )
        if c in table.columns
    ]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
