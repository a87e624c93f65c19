"""The seaborn figures of `vssl table` (results/figures/*.png, names in vssl.workflow.FIGURES).

- ``accuracy``: top-1 of every probe (linear, kNN per k, online) by variant (grid entry) and
  dataset; bars are means over seeds, error bars one standard deviation over seeds. The
  untrained floor (method ``random``) is drawn as a dashed reference line per dataset rather
  than as a bar: a trained method is worth its cost only above it.
- ``training_curves``: every numeric column of each run's history.csv against ``epoch``
  (mean over seeds, band = one standard deviation), one panel per column.
- ``uncertainty``: VSSL's predicted variance ``v_i = mean_j exp(logvar_ij)`` against the linear
  probe's errors: the error rate in each decile of ``v`` (a useful variance rises left to
  right) and the distribution of ``log10 v`` for right and wrong predictions.

A figure with nothing to show (no VSSL run, no history rows) still gets written, saying so,
so the set of outputs is the same for every grid.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from vssl.io import atomic_path  # noqa: E402
from vssl.report.table import ONLINE_KEY, ReportError  # noqa: E402
from vssl.workflow import FIGURES, Run  # noqa: E402

# history.csv columns left out of the curves: row indices and throughput, not learning.
HISTORY_SKIP = (
    "epoch",
    "step",
    "global_step",
    "images_per_second",
    "epoch_time_s",
    "monitor_time_s",
)
DECILES = 10


def _order(values: pd.Series) -> list:
    """Unique values in order of first appearance (the grid's order)."""
    return list(dict.fromkeys(values.tolist()))


def _save(fig: plt.Figure, path: str | Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _placeholder(path: str | Path, title: str, text: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 2.5))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return _save(fig, path)


FLOOR_METHOD = "random"  # the untrained backbone: drawn as a reference line, not a bar


def _with_variant(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``variant`` column (the method's name where a frame predates variants)."""
    if "variant" not in frame.columns:
        frame = frame.assign(variant=frame["method"])
    return frame


def top1_long(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per-run top-1 accuracies in long form: dataset, method, variant, seed, probe, top1."""
    per_run = _with_variant(per_run)
    cols = [c for c in per_run.columns if c.endswith("_top1")]
    cols = [c for c in cols if c != ONLINE_KEY] + ([ONLINE_KEY] if ONLINE_KEY in cols else [])
    long = per_run.melt(
        id_vars=["dataset", "method", "variant", "seed"],
        value_vars=cols,
        var_name="probe",
        value_name="top1",
    )
    long["probe"] = long["probe"].str.removesuffix("_top1")
    return long.dropna(subset=["top1"])


def floor_levels(long: pd.DataFrame) -> pd.DataFrame:
    """Mean top-1 of the untrained floor per (probe, dataset): the reference lines."""
    floor = long[long["method"] == FLOOR_METHOD]
    return floor.groupby(["probe", "dataset"], sort=False, as_index=False)["top1"].mean()


def accuracy_figure(per_run: pd.DataFrame, path: str | Path) -> Path:
    """Bars: mean top-1 over seeds per (probe, variant, dataset); error bars: one std; the
    untrained floor as a dashed line per dataset in the dataset's colour."""
    long = top1_long(per_run)
    if long.empty:
        return _placeholder(path, "Top-1 accuracy", "no accuracy was measured")
    trained = long[long["method"] != FLOOR_METHOD]
    floor = floor_levels(long) if not trained.empty else long.iloc[0:0]
    bars = trained if not trained.empty else long
    datasets = _order(per_run["dataset"])
    palette = dict(zip(datasets, sns.color_palette(n_colors=len(datasets)), strict=True))
    g = sns.catplot(
        data=bars,
        kind="bar",
        x="variant",
        y="top1",
        hue="dataset",
        col="probe",
        order=_order(bars["variant"]),
        hue_order=datasets,
        col_order=_order(long["probe"]),
        palette=palette,
        errorbar="sd",
        capsize=0.15,
        height=3.2,
        aspect=1.0,
    )
    for probe, ax in g.axes_dict.items():
        for _, row in floor[floor["probe"] == probe].iterrows():
            ax.axhline(row["top1"], color=palette[row["dataset"]], ls="--", lw=1.4, zorder=5)
    if not floor.empty:
        g.axes.flat[0].plot([], [], color="0.3", ls="--", label="untrained floor")
        g.axes.flat[0].legend(loc="lower left", fontsize="small")
    g.set_axis_labels("", "top-1 accuracy (%)")
    g.set_titles("{col_name}")
    if sum(len(str(v)) for v in bars["variant"].unique()) > 24:  # long names would overlap
        for ax in g.axes.flat:
            ax.tick_params(axis="x", labelrotation=30)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
    g.figure.suptitle("Probe accuracy (mean ± std over seeds; dashed: untrained floor)", y=1.03)
    return _save(g.figure, path)


def read_history(path: Path, name: str) -> pd.DataFrame | None:
    """One history.csv as numbers (empty cells NaN); None for an empty file.

    The engine writes numbers only, so anything else is damage, a :class:`ReportError` naming
    ``name`` and the line: pandas would read a garbage line as text, turning the columns it
    touches (``epoch`` included) non-numeric, and the run would drop out of the figure silently.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{name}: missing") from None
    except UnicodeDecodeError as e:
        raise ReportError(f"{name}: not a readable CSV ({_one_line(e)})") from None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[list[float]] = []
    try:
        for fields in reader:
            if not fields:
                continue  # a blank line, as pandas skips them
            if header is None:
                header = [f.strip() for f in fields]
                if "epoch" not in header:
                    raise ReportError(f"{name}: no `epoch` column (columns: {', '.join(header)})")
                if len(set(header)) != len(header):
                    raise ReportError(f"{name}: a column name is repeated ({', '.join(header)})")
                continue
            where = f"{name}: line {reader.line_num}"
            if len(fields) != len(header):
                raise ReportError(f"{where}: {len(fields)} fields, the header has {len(header)}")
            row = [_history_cell(c, f, where) for c, f in zip(header, fields, strict=True)]
            epoch = row[header.index("epoch")]
            if not (math.isfinite(epoch) and epoch == round(epoch)):
                raise ReportError(f"{where}: `epoch` must be a whole number")
            rows.append(row)
    except csv.Error as e:
        raise ReportError(f"{name}: not a readable CSV ({_one_line(e)})") from None
    if header is None:
        return None
    return pd.DataFrame(rows, columns=header, dtype=float).astype({"epoch": int})


def _history_cell(column: str, text: str, where: str) -> float:
    if not text.strip():
        return math.nan  # "not applicable" (e.g. knn_top1 between kNN epochs)
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"{where}: `{column}` is {text[:40]!r}, not a number") from None


def load_histories(runs: Iterable[Run], root: str | Path = ".") -> pd.DataFrame:
    """Every run's history.csv in long form: dataset, method, variant, seed, epoch, metric,
    value."""
    root = Path(root)
    frames = []
    for r in runs:
        h = read_history(root / r.history, str(r.history))
        if h is None or h.empty:
            continue  # an untrained run (method `random`) has a header and no rows, or nothing
        values = [c for c in h.columns if c not in HISTORY_SKIP]
        long = h.melt(id_vars=["epoch"], value_vars=values, var_name="metric", value_name="value")
        long.insert(0, "seed", r.seed)
        long.insert(0, "variant", r.variant)
        long.insert(0, "method", r.method)
        long.insert(0, "dataset", r.dataset)
        frames.append(long.dropna(subset=["value"]))
    cols = ["dataset", "method", "variant", "seed", "epoch", "metric", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def training_curves_figure(history: pd.DataFrame, path: str | Path) -> Path:
    """One panel per history column against epoch; mean over seeds, band one std."""
    if history.empty:
        return _placeholder(path, "Training curves", "no run has a training history")
    metrics = _order(history["metric"])
    g = sns.relplot(
        data=history,
        kind="line",
        x="epoch",
        y="value",
        hue="variant",
        style="dataset",
        col="metric",
        col_order=metrics,
        col_wrap=min(3, len(metrics)),
        errorbar="sd",
        marker="o",
        height=2.8,
        aspect=1.2,
        facet_kws={"sharey": False, "sharex": True},
    )
    g.set_titles("{col_name}")
    g.set_ylabels("")
    g.figure.suptitle("Training curves (history.csv; mean ± std over seeds)", y=1.03)
    return _save(g.figure, path)


def load_uncertainty(runs: Iterable[Run], root: str | Path = ".") -> pd.DataFrame:
    """The runs' uncertainty sidecars: dataset, method, variant, seed, mean_variance, correct
    (bool), one row per test sample that has a predicted variance.

    The probe writes a sidecar for every run; rows with an empty ``mean_variance`` (every row of
    a run without VSSL's Gaussian head) are skipped. A missing or malformed sidecar is a
    :class:`ReportError`.
    """
    root = Path(root)
    frames = []
    for r in runs:
        path = root / r.uncertainty
        if not path.is_file():
            raise ReportError(f"{r.uncertainty}: missing (the probe writes it for every run)")
        try:
            u = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ReportError(f"{r.uncertainty}: not a readable CSV ({_one_line(e)})") from None
        lacking = {"correct", "mean_variance"} - set(u.columns)
        if lacking:
            raise ReportError(f"{r.uncertainty}: missing column(s) {', '.join(sorted(lacking))}")
        try:
            variance = pd.to_numeric(u["mean_variance"], errors="raise").astype(float)
            correct = pd.to_numeric(u["correct"], errors="raise")
        except (ValueError, TypeError) as e:
            raise ReportError(f"{r.uncertainty}: non-numeric values ({_one_line(e)})") from None
        keep = variance.notna().to_numpy()
        if correct[keep].isna().any():
            raise ReportError(f"{r.uncertainty}: empty `correct` cells")
        if not keep.any():
            continue
        frames.append(
            pd.DataFrame(
                {
                    "dataset": r.dataset,
                    "method": r.method,
                    "variant": r.variant,
                    "seed": r.seed,
                    "mean_variance": variance[keep].to_numpy(),
                    "correct": correct[keep].astype(bool).to_numpy(),
                }
            )
        )
    cols = ["dataset", "method", "variant", "seed", "mean_variance", "correct"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def error_by_decile(unc: pd.DataFrame, bins: int = DECILES) -> pd.DataFrame:
    """Error rate (%) per quantile bin of the predicted variance, per (dataset, method, seed).

    Bin b of a run holds the samples whose variance rank lies in [b/bins, (b+1)/bins); ranks
    break ties by order, so every bin has n/bins samples even when variances repeat.
    """
    rows = []
    unc = _with_variant(unc)
    groups = unc.groupby(["dataset", "method", "variant", "seed"], sort=False)
    for (dataset, method, variant, seed), g in groups:
        ranks = g["mean_variance"].rank(method="first").to_numpy() - 1
        b = np.minimum((ranks * bins / len(g)).astype(int), bins - 1)
        err = (~g["correct"].to_numpy()).astype(float)
        for k in range(bins):
            sel = b == k
            if sel.any():
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "variant": variant,
                        "seed": seed,
                        "decile": k + 1,
                        "error_rate": 100.0 * err[sel].mean(),
                    }
                )
    return pd.DataFrame(rows)


def uncertainty_figure(
    unc: pd.DataFrame, path: str | Path, auroc: pd.DataFrame | None = None
) -> Path:
    """Error rate by variance decile, and log10 variance of right vs wrong predictions.

    ``auroc`` (optional): per-run rows with dataset and uncertainty_error_auroc, shown in the title.
    """
    if unc.empty:
        return _placeholder(
            path, "Predicted variance vs error", "no VSSL run in this grid (nothing to show)"
        )
    unc = _with_variant(unc)
    # One group per (dataset, variant): "dataset" alone when the grid has one VSSL variant.
    several = unc["variant"].nunique() > 1
    unc = unc.assign(group=unc["dataset"] + " / " + unc["variant"] if several else unc["dataset"])
    groups = _order(unc["group"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10 + 1.5 * several * len(groups) / 2, 3.8))
    dec = error_by_decile(unc)
    dec["group"] = dec["dataset"] + " / " + dec["variant"] if several else dec["dataset"]
    sns.lineplot(
        data=dec,
        x="decile",
        y="error_rate",
        hue="group",
        hue_order=groups,
        errorbar="sd",
        marker="o",
        ax=ax1,
    )
    ax1.set_xlabel("predicted-variance decile (low → high)")
    ax1.set_ylabel("linear-probe error rate (%)")
    ax1.set_xticks(range(1, DECILES + 1))
    ax1.legend(title="", fontsize="small")
    plot = unc.assign(
        log10_variance=np.log10(unc["mean_variance"].clip(lower=1e-30)),
        outcome=np.where(unc["correct"], "correct", "wrong"),
    )
    with warnings.catch_warnings():
        # seaborn 0.13 passes matplotlib 3.11's deprecated `vert` to bxp; harmless here.
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        sns.boxplot(
            data=plot,
            x="group",
            y="log10_variance",
            hue="outcome",
            order=groups,
            hue_order=["correct", "wrong"],
            showfliers=False,
            ax=ax2,
        )
    ax2.set_ylabel("log10 predicted variance")
    ax2.set_xlabel("")
    if several:
        ax2.tick_params(axis="x", labelrotation=30)
    title = "VSSL: predicted variance vs linear-probe error"
    if auroc is not None and "uncertainty_error_auroc" in auroc:
        runs = _with_variant(auroc)
        vssl = runs[runs["method"] == "vssl"] if "method" in runs else runs
        parts = []
        for (ds, variant), g in vssl.groupby(["dataset", "variant"], sort=False):
            a = g["uncertainty_error_auroc"].dropna()
            if len(a):
                parts.append(f"{ds + ' / ' + variant if several else ds}: {a.mean():.3f}")
        if parts:
            title += "\n(error AUROC " + ", ".join(parts) + ")"
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def figure_paths(out_dir: str | Path) -> dict[str, Path]:
    """Name -> PNG path of every figure of vssl.workflow.FIGURES under ``out_dir``."""
    return {k: Path(out_dir) / Path(v).name for k, v in FIGURES.items()}


def render_figures(
    per_run: pd.DataFrame,
    history: pd.DataFrame,
    uncertainty: pd.DataFrame,
    paths: dict[str, Path],
) -> dict[str, Path]:
    """Draw every figure of vssl.workflow.FIGURES from already loaded inputs (``per_run`` from
    :func:`vssl.report.table.load_runs`, :func:`load_histories`, :func:`load_uncertainty`) into
    ``paths`` (name -> file); returns ``paths``. Reads no file."""
    missing = set(FIGURES) - set(paths)
    if missing:
        raise ReportError(f"no path for figure(s) {sorted(missing)}")
    sns.set_theme(style="whitegrid", context="notebook")
    writers = {
        "accuracy": lambda path: accuracy_figure(per_run, path),
        "training_curves": lambda path: training_curves_figure(history, path),
        "uncertainty": lambda path: uncertainty_figure(uncertainty, path, auroc=per_run),
    }
    missing = set(FIGURES) - set(writers)
    if missing:  # a new entry in FIGURES without a writer here
        raise ReportError(f"no writer for figure(s) {sorted(missing)}")
    for name in FIGURES:
        writers[name](paths[name])
    return {name: Path(paths[name]) for name in FIGURES}


def write_figures(
    per_run: pd.DataFrame, runs: list[Run], root: str | Path, out_dir: str | Path
) -> dict[str, Path]:
    """Read the runs' histories and sidecars and write every figure of vssl.workflow.FIGURES
    into ``out_dir`` (each atomically; `vssl table` stages them all-or-nothing with the table
    instead); returns name -> path."""
    history, uncertainty = load_histories(runs, root), load_uncertainty(runs, root)
    return render_figures(per_run, history, uncertainty, figure_paths(out_dir))
