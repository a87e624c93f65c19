"""`vssl table`: aggregate every probe of the profile's grid into results/table.csv and figures.

    vssl table --params params.yaml --profile quick --out results/table.csv
               --figures results/figures

Reads, for each (dataset, method, seed) of the grid, the files listed in vssl.workflow.Run
(probe JSON, its uncertainty sidecar, metrics.json, history.csv) under ``--root``, writes the
table (vssl.report.table) and the figures (vssl.report.figures), and logs both to an MLflow run
tagged ``stage=table`` and the profile.

All or nothing: the output paths are checked first (exit 2), then every input is read and checked
(exit 1, listing every missing file) before the MLflow run starts; the table and the figures are
rendered to temporary files and renamed into place only when all of them succeeded, so an error
never leaves a partial set of outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
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
    p.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log to MLflow (same as --set mlflow.enabled=false; mlflow is not imported)",
    )


def _check_outputs(out: Path, figures: Path) -> None:
    """The table and figure paths can be written (OutputPathError, exit 2, otherwise)."""
    from vssl.io import check_writable_dir, check_writable_file
    from vssl.workflow import FIGURES

    check_writable_file(out, "table")
    check_writable_dir(figures, "figures folder")
    for name in FIGURES.values():
        check_writable_file(figures / Path(name).name, "figure")


def run(args: argparse.Namespace) -> int:
    from vssl.config import load_params
    from vssl.report.table import ReportError, check_inputs, load_runs
    from vssl.workflow import FIGURES, grid_runs

    out, figures_dir = Path(args.out), Path(args.figures)
    _check_outputs(out, figures_dir)  # before reading anything
    overrides = [*args.overrides, *(["mlflow.enabled=false"] if args.no_mlflow else [])]
    params = load_params(args.params, profile=args.profile, overrides=overrides)
    runs = grid_runs(params)
    root = Path(args.root)
    # Every input is read and checked before the MLflow run starts or anything is written.
    try:
        check_inputs(runs, root)  # every file exists: before importing MLflow, seaborn and friends
        per_run = load_runs(runs, root)
        from vssl.report.figures import load_histories, load_uncertainty

        history, uncertainty = load_histories(runs, root), load_uncertainty(runs, root)
    except ReportError as e:
        print(f"vssl table: error: {e}", file=sys.stderr)
        return 1

    from vssl import tracking
    from vssl.io import staged_paths
    from vssl.report.figures import figure_paths, render_figures
    from vssl.report.table import aggregate, metric_columns, write_table

    g = params.grid
    figures = figure_paths(figures_dir)
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
            table = aggregate(per_run, params)
            # All or nothing: the table and every figure are rendered to temporary files beside
            # their targets and renamed into place only once all of them succeeded.
            with staged_paths([out, *(figures[k] for k in FIGURES)]) as (tmp_table, *tmp_figs):
                write_table(table, tmp_table)
                render_figures(
                    per_run, history, uncertainty, dict(zip(FIGURES, tmp_figs, strict=True))
                )
            tracking.log_artifact(out)
            for path in figures.values():
                tracking.log_artifact(path, artifact_path="figures")
            tracking.log_metrics(
                {
                    # By grid entry: variants of one method must not overwrite each other.
                    f"{row['dataset']}.{row['variant']}.{m}_mean": row[f"{m}_mean"]
                    for _, row in table.iterrows()
                    for m in metric_columns(per_run)
                }
            )
    except ReportError as e:  # the run is marked FAILED; say which file is wrong
        print(f"vssl table: error: {e}", file=sys.stderr)
        return 1
    _print_summary(table)
    print(f"wrote {out} and {len(figures)} figures under {figures_dir}")
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
