"""`vssl table`: aggregation over seeds, missing/malformed inputs, figures and the MLflow run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vssl.config import load_params
from vssl.report.table import (
    ReportError,
    aggregate,
    check_inputs,
    load_runs,
    metric_columns,
    write_table,
)
from vssl.workflow import grid_runs

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRID = [
    "grid.datasets=[fashion_mnist,cifar10_mini]",
    "grid.methods=[vssl,byol,random]",
    "grid.seeds=[0,1,2]",
]


def _params(overrides: list[str] = GRID):
    return load_params(ROOT / "params.yaml", profile="smoke", overrides=overrides)


def _probe_values(dataset: str, method: str, seed: int, variant: str | None = None) -> dict:
    """Distinct, reproducible numbers per run, so a mix-up between runs changes the table."""
    base = {"fashion_mnist": 70.0, "cifar10_mini": 40.0}[dataset]
    base += {"vssl": 10.0, "byol": 8.0, "random": -20.0}[method]
    base += 0.0 if variant in (None, method) else 3.0 + len(variant)  # a variant differs too
    res = {
        "linear_top1": base + 1.5 * seed,
        "linear_top5": min(100.0, base + 20 + seed),
        "linear_weight_decay": 1e-4,
        "knn20_top1": base - 2 + 0.5 * seed**2,
        "knn20_top5": base + 15,
        "knn200_top1": base - 3 - seed,
        "knn200_top5": base + 14,
        "n_train": 512,
        "n_test": 256,
        "feature_dim": 32,
        "num_classes": 10,
    }
    res["feature_norm_error_auroc"] = 0.5 + 0.01 * seed  # every method has the baseline
    if method == "vssl":
        res["uncertainty_error_auroc"] = 0.6 + 0.05 * seed
        res["uncertainty_mean_variance"] = 0.01 * (seed + 1)
    return res


def write_fake_results(params, root: Path, with_sidecar: bool = True) -> None:
    """The files the pipeline's stages write for every run of ``params``' grid."""
    rng = np.random.default_rng(0)
    for r in grid_runs(params):
        (root / r.probe).parent.mkdir(parents=True, exist_ok=True)
        # As `vssl probe` and the engine write them: each file says which run it belongs to.
        ident = {"dataset": r.dataset, "method": r.method, "variant": r.variant, "seed": r.seed}
        probe = {**_probe_values(r.dataset, r.method, r.seed, r.variant), "source": ident}
        (root / r.probe).write_text(json.dumps(probe))
        (root / r.run_dir).mkdir(parents=True, exist_ok=True)
        # As vssl.train.engine writes it: `random` takes no optimiser step and has no online probe.
        untrained = r.method == "random"
        metrics = {
            "online_probe_top1": None if untrained else 30.0 + r.seed,
            "epochs": 2,
            "global_step": 0 if untrained else 8,
            "knn_top1": 25.0,
            **ident,
        }
        (root / r.metrics).write_text(json.dumps(metrics))
        if r.method == "random":
            (root / r.history).write_text("epoch,loss,online_probe_top1\n")  # untrained: no rows
        else:
            (root / r.history).write_text(
                "epoch,loss,online_probe_top1,lr,images_per_second\n"
                f"1,{2.0 - 0.1 * r.seed},{20 + r.seed},0.1,900\n"
                f"2,{1.5 - 0.1 * r.seed},{30 + r.seed},0.05,950\n"
            )
        if with_sidecar:
            # `vssl probe` writes the sidecar for every run; only VSSL has variances.
            n = 200
            variance = rng.lognormal(size=n)
            correct = variance < np.quantile(variance, 0.7)  # the top 30 % variances are wrong
            side = pd.DataFrame(
                {
                    "index": np.arange(n),
                    "label": rng.integers(0, 10, n),
                    "prediction": rng.integers(0, 10, n),
                    "correct": correct.astype(int),
                    "mean_variance": variance if r.method == "vssl" else np.nan,
                }
            )
            side.to_csv(root / r.uncertainty, index=False)


def test_aggregate_means_and_sample_std_over_seeds(tmp_path: Path) -> None:
    params = _params()
    write_fake_results(params, tmp_path)
    per_run = load_runs(grid_runs(params), tmp_path)
    assert len(per_run) == 2 * 3 * 3
    table = aggregate(per_run, params)
    # One row per dataset x method, in the grid's order.
    assert list(zip(table["dataset"], table["method"], strict=True)) == [
        (d, m) for d in ("fashion_mnist", "cifar10_mini") for m in ("vssl", "byol", "random")
    ]
    row = table[(table["dataset"] == "cifar10_mini") & (table["method"] == "vssl")].iloc[0]
    seeds = np.array([0, 1, 2], dtype=float)
    for metric, values in {
        "linear_top1": 50.0 + 1.5 * seeds,
        "knn20_top1": 48.0 + 0.5 * seeds**2,
        "knn200_top1": 47.0 - seeds,
        "online_probe_top1": 30.0 + seeds,
        "uncertainty_error_auroc": 0.6 + 0.05 * seeds,
        "feature_norm_error_auroc": 0.5 + 0.01 * seeds,
    }.items():
        assert row[f"{metric}_mean"] == pytest.approx(values.mean())
        assert row[f"{metric}_std"] == pytest.approx(values.std(ddof=1))
    assert row["n_seeds"] == 3 and row["epochs"] == 2
    assert row["backbone"] == "resnet18" and row["width"] == params.backbone.width
    assert row["profile"] == "smoke" and row["n_train"] == 512 and row["feature_dim"] == 32
    # Metrics a method lacks stay empty rather than becoming 0.
    byol = table[table["method"] == "byol"].iloc[0]
    assert math.isnan(byol["uncertainty_error_auroc_mean"])
    rnd = table[table["method"] == "random"].iloc[0]
    assert math.isnan(rnd["online_probe_top1_mean"]) and rnd["epochs"] == 0
    # Column order: ids first, then linear before kNN (top-1 before top-5, small k first).
    metric_cols = [c for c in table.columns if c.endswith("_mean")]
    assert metric_cols[:6] == [
        "linear_top1_mean",
        "linear_top5_mean",
        "knn20_top1_mean",
        "knn200_top1_mean",
        "knn20_top5_mean",
        "knn200_top5_mean",
    ]


def test_one_seed_has_empty_std_and_csv_is_deterministic(tmp_path: Path) -> None:
    params = _params([*GRID[:2], "grid.seeds=[0]"])
    write_fake_results(params, tmp_path)
    table = aggregate(load_runs(grid_runs(params), tmp_path), params)
    assert table["linear_top1_std"].isna().all()
    assert (table["n_seeds"] == 1).all()
    write_table(table, tmp_path / "a.csv")
    write_table(aggregate(load_runs(grid_runs(params), tmp_path), params), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    back = pd.read_csv(tmp_path / "a.csv")
    assert back["linear_top1_std"].isna().all()  # written empty, read back as NaN
    assert back.loc[0, "linear_top1_mean"] == pytest.approx(80.0)


def test_missing_inputs_are_all_listed(tmp_path: Path) -> None:
    params = _params()
    write_fake_results(params, tmp_path)
    runs = grid_runs(params)
    gone = [runs[0].probe, runs[4].metrics, runs[7].history]
    for p in gone:
        (tmp_path / p).unlink()
    with pytest.raises(ReportError) as e:
        check_inputs(runs, tmp_path)
    for p in gone:
        assert p in str(e.value)
    assert "3 input file(s)" in str(e.value)


def test_malformed_probe_json_names_the_file(tmp_path: Path) -> None:
    params = _params()
    write_fake_results(params, tmp_path)
    bad = grid_runs(params)[2]
    values = _probe_values(bad.dataset, bad.method, bad.seed)
    del values["linear_top1"]
    (tmp_path / bad.probe).write_text(json.dumps(values))
    with pytest.raises(ReportError, match=rf"{bad.probe}: missing key\(s\) linear_top1"):
        load_runs(grid_runs(params), tmp_path)
    values["linear_top1"] = "high"
    (tmp_path / bad.probe).write_text(json.dumps(values))
    with pytest.raises(ReportError, match="linear_top1"):
        load_runs(grid_runs(params), tmp_path)


def test_a_file_of_another_run_is_refused(tmp_path: Path) -> None:
    """A probe JSON or metrics.json copied over another run's would put that run's numbers in
    the wrong row; each names its run, and the table checks it against the path."""
    params = _params()
    write_fake_results(params, tmp_path)
    runs = grid_runs(params)
    vssl0 = next(r for r in runs if r.method == "vssl" and r.seed == 0)
    byol0 = next(r for r in runs if r.method == "byol" and r.seed == 0)
    vssl1 = next(r for r in runs if r.method == "vssl" and r.seed == 1)
    original = (tmp_path / byol0.probe).read_text()
    (tmp_path / byol0.probe).write_text((tmp_path / vssl0.probe).read_text())
    with pytest.raises(ReportError, match=rf"{byol0.probe}: belongs to another run: method 'vssl'"):
        load_runs(runs, tmp_path)
    (tmp_path / byol0.probe).write_text(original)
    (tmp_path / vssl1.metrics).write_text((tmp_path / vssl0.metrics).read_text())
    with pytest.raises(ReportError, match=rf"{vssl1.metrics}: belongs to another run: seed 0"):
        load_runs(runs, tmp_path)
    # Files written before the identity was recorded are read as before.
    for r in runs:
        probe = json.loads((tmp_path / r.probe).read_text())
        del probe["source"]
        (tmp_path / r.probe).write_text(json.dumps(probe))
        (tmp_path / r.metrics).write_text(json.dumps({"epochs": 2, "global_step": 8}))
    assert len(load_runs(runs, tmp_path)) == len(runs)


def test_error_rate_by_variance_decile() -> None:
    from vssl.report.figures import error_by_decile

    n = 100
    variance = np.arange(n, dtype=float)[::-1]  # unsorted input on purpose
    correct = variance < 90  # exactly the 10 largest variances are wrong
    unc = pd.DataFrame(
        {"dataset": "d", "method": "vssl", "seed": 0, "mean_variance": variance, "correct": correct}
    )
    dec = error_by_decile(unc)
    assert list(dec["decile"]) == list(range(1, 11))
    assert list(dec["error_rate"]) == [0.0] * 9 + [100.0]


def test_missing_vssl_sidecar_is_an_error(tmp_path: Path) -> None:
    from vssl.report.figures import load_uncertainty

    params = _params()
    write_fake_results(params, tmp_path, with_sidecar=False)
    with pytest.raises(ReportError, match="uncertainty.csv"):
        load_uncertainty(grid_runs(params), tmp_path)


def test_cli_writes_table_figures_and_mlflow_run(tmp_path: Path, mlflow_uri: str) -> None:
    from mlflow import MlflowClient

    from vssl.cli import main
    from vssl.workflow import FIGURES

    params = _params()
    write_fake_results(params, tmp_path)
    out, figs = tmp_path / "results" / "table.csv", tmp_path / "results" / "figures"
    args = ["table", "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    args += [a for o in GRID for a in ("--set", o)]
    assert main([*args, "--root", str(tmp_path), "--out", str(out), "--figures", str(figs)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 6
    for name in FIGURES.values():
        png = figs / Path(name).name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert not list(figs.glob(".*"))  # no temporary files left behind

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(params.mlflow.experiment)
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'table'")
    assert run.data.tags["profile"] == "smoke" and run.info.status == "FINISHED"
    assert run.data.metrics["cifar10_mini.vssl.linear_top1_mean"] == pytest.approx(51.5)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"table.csv", "figures"} <= artifacts
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
    assert names == {Path(p).name for p in FIGURES.values()}


def test_variants_of_one_method_keep_their_own_rows_width_and_mlflow_metrics(
    tmp_path: Path, mlflow_uri: str
) -> None:
    """Two variants of VSSL and a width ablation: each row is described by its own params (a
    variant's backbone width, not the base one) and each gets its own MLflow metrics (keyed by
    the grid entry: by method, the last variant would overwrite the others)."""
    import yaml
    from mlflow import MlflowClient

    from vssl.cli import main

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["variants"]["vssl_w8"] = {"method": "vssl", "set": {"backbone.width": 8}}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    grid = ["grid.datasets=[cifar10_mini]", "grid.methods=[vssl,vssl_2025,vssl_w8]"]
    grid.append("grid.seeds=[0,1]")
    params = load_params(params_file, profile="smoke", overrides=grid)
    write_fake_results(params, tmp_path)
    table = aggregate(load_runs(grid_runs(params), tmp_path), params).set_index("variant")
    assert table.loc["vssl_w8", "width"] == 8
    assert table.loc["vssl", "width"] == table.loc["vssl_2025", "width"] == params.backbone.width
    assert params.backbone.width != 8

    out, figs = tmp_path / "results" / "table.csv", tmp_path / "results" / "figures"
    args = ["table", "--params", str(params_file), "--profile", "smoke", "--root", str(tmp_path)]
    args += [a for o in grid for a in ("--set", o)]
    assert main([*args, "--out", str(out), "--figures", str(figs)]) == 0
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(params.mlflow.experiment)
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'table'")
    logged = run.data.metrics
    for variant in ("vssl", "vssl_2025", "vssl_w8"):
        want = np.mean(
            [_probe_values("cifar10_mini", "vssl", s, variant)["linear_top1"] for s in (0, 1)]
        )
        assert logged[f"cifar10_mini.{variant}.linear_top1_mean"] == pytest.approx(want)


def test_cli_fails_fast_on_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vssl.cli import main

    rc = main(["table", "--params", str(ROOT / "params.yaml"), "--root", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "missing" in err and "results/probes/quick/cifar10_mini/vssl/seed0.json" in err


def _cli_args(tmp_path: Path) -> tuple[list[str], Path, Path]:
    out, figs = tmp_path / "results" / "table.csv", tmp_path / "results" / "figures"
    args = ["table", "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    args += [a for o in GRID for a in ("--set", o)]
    args += ["--root", str(tmp_path), "--out", str(out), "--figures", str(figs)]
    return args, out, figs


def _mlflow_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_check_inputs_covers_the_sidecar_of_every_run(tmp_path: Path) -> None:
    params = _params()
    write_fake_results(params, tmp_path)
    runs = grid_runs(params)
    byol = next(r for r in runs if r.method == "byol")
    (tmp_path / byol.uncertainty).unlink()
    with pytest.raises(ReportError, match="1 input file") as e:
        check_inputs(runs, tmp_path)
    assert byol.uncertainty in str(e.value)


def test_load_uncertainty_skips_rows_without_variance(tmp_path: Path) -> None:
    from vssl.report.figures import load_uncertainty

    params = _params()
    write_fake_results(params, tmp_path)
    unc = load_uncertainty(grid_runs(params), tmp_path)
    assert set(unc["method"]) == {"vssl"}  # byol's and random's sidecars have no variance
    assert len(unc) == 2 * 3 * 200 and unc["mean_variance"].notna().all()


def test_cli_missing_sidecar_writes_nothing(
    tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    from vssl.cli import main

    params = _params()
    write_fake_results(params, tmp_path)
    gone = next(r for r in grid_runs(params) if r.method == "random")
    (tmp_path / gone.uncertainty).unlink()
    args, out, figs = _cli_args(tmp_path)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert gone.uncertainty in err
    assert not out.exists() and not figs.exists()
    assert _mlflow_runs(mlflow_uri) == []  # checked before the MLflow run starts


def test_cli_malformed_input_writes_no_partial_outputs(
    tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    """A bad sidecar (read last, for the figures) used to leave table.csv without figures."""
    from vssl.cli import main

    params = _params()
    write_fake_results(params, tmp_path)
    bad = next(r for r in grid_runs(params) if r.method == "vssl")
    (tmp_path / bad.uncertainty).write_text("index,label\n0,1\n")
    args, out, figs = _cli_args(tmp_path)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{bad.uncertainty}: missing column(s) correct, mean_variance" in err
    assert not out.exists() and not figs.exists()
    assert not list((tmp_path / "results").glob(".*"))  # no staging files left behind
    assert _mlflow_runs(mlflow_uri) == []


def test_cli_failure_while_rendering_writes_nothing(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The last figure failing leaves neither the table nor the first figures behind."""
    from vssl.cli import main
    from vssl.report import figures

    params = _params()
    write_fake_results(params, tmp_path)

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ReportError("uncertainty figure: boom")

    monkeypatch.setattr(figures, "uncertainty_figure", boom)
    args, out, figs = _cli_args(tmp_path)
    assert main(args) == 1
    assert "boom" in capsys.readouterr().err
    assert not out.exists() and not figs.exists()
    assert not list((tmp_path / "results").rglob("*.png"))
    assert not list((tmp_path / "results").glob(".*"))
    (run,) = _mlflow_runs(mlflow_uri)
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("which", ["out_is_folder", "figures_is_file", "parent_is_file"])
def test_cli_bad_output_paths_exit_2_before_reading(
    tmp_path: Path, which: str, capsys: pytest.CaptureFixture
) -> None:
    from vssl.cli import main

    args, out, figs = _cli_args(tmp_path)  # no inputs at all: the outputs are checked first
    if which == "out_is_folder":
        out.mkdir(parents=True)
    elif which == "figures_is_file":
        figs.parent.mkdir(parents=True)
        figs.write_text("not a folder")
    else:
        (tmp_path / "results").write_text("not a folder")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vssl table: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("variants", "rotation"),
    [(["vssl", "byol"], 0.0), (["vssl_gaussian", "vssl_nosample", "vssl_stdprior"], 30.0)],
)
def test_accuracy_figure_slants_variant_names_that_would_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variants: list[str], rotation: float
) -> None:
    from vssl.report import figures

    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: saved.append(fig) or Path(path))
    per_run = pd.DataFrame(
        [
            {"dataset": "d", "method": "vssl", "variant": v, "seed": s, "linear_top1": 40.0 + s}
            for v in variants
            for s in (0, 1)
        ]
    )
    figures.accuracy_figure(per_run, tmp_path / "accuracy.png")
    labels = saved[0].axes[0].get_xticklabels()
    assert [t.get_text() for t in labels] == variants
    assert {t.get_rotation() for t in labels} == {rotation}


def test_metric_columns_put_the_variance_beside_its_baseline() -> None:
    cols = ["zz_other", "feature_norm_error_auroc", "uncertainty_error_auroc", "online_probe_top1",
            "knn200_top1", "knn20_top1", "linear_top1", "uncertainty_mean_variance"]  # fmt: skip
    frame = pd.DataFrame(columns=["dataset", "method", "variant", "seed", "epochs", *cols])
    assert metric_columns(frame) == [
        "linear_top1", "knn20_top1", "knn200_top1", "online_probe_top1",
        "uncertainty_error_auroc", "uncertainty_mean_variance", "feature_norm_error_auroc",
        "zz_other",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("garbage\n", "line 4: 1 fields, the header has 5"),
        ("3,abc,40,0.01,990\n", "line 4: `loss` is 'abc', not a number"),
        ("3,1.0\n", "line 4: 2 fields, the header has 5"),
        (",1.0,40,0.01,990\n", "line 4: `epoch` must be a whole number"),
    ],
)
def test_a_malformed_history_is_an_error_naming_the_file(
    tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture, garbage: str, message: str
) -> None:
    """A garbage line made pandas read columns as text: the run dropped out of the training
    curves and the table exited 0. An untrained run's header without rows stays legitimate."""
    import re

    from vssl.cli import main
    from vssl.report.figures import load_histories

    params = _params()
    write_fake_results(params, tmp_path)
    runs = grid_runs(params)
    history = load_histories(runs, tmp_path)
    assert set(history["method"]) == {"vssl", "byol"}  # `random`: a header, no rows
    assert history["epoch"].dtype.kind == "i" and history["value"].dtype.kind == "f"
    bad = next(r for r in runs if r.method == "vssl")
    with open(tmp_path / bad.history, "a") as f:
        f.write(garbage)
    with pytest.raises(ReportError, match=re.escape(f"{bad.history}: {message}")):
        load_histories(runs, tmp_path)
    args, out, figs = _cli_args(tmp_path)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == f"vssl table: error: {bad.history}: {message}\n"
    assert not out.exists() and not figs.exists()
    assert _mlflow_runs(mlflow_uri) == []


def test_cli_no_mlflow_writes_the_table_without_a_run(tmp_path: Path, mlflow_uri: str) -> None:
    """`vssl table --no-mlflow`, like the other stages' flag: outputs written, no MLflow run."""
    from mlflow import MlflowClient

    from vssl.cli import main

    params = _params()
    write_fake_results(params, tmp_path)
    out, figs = tmp_path / "results" / "table.csv", tmp_path / "results" / "figures"
    args = ["table", "--params", str(ROOT / "params.yaml"), "--profile", "smoke", "--no-mlflow"]
    args += [a for o in GRID for a in ("--set", o)]
    assert main([*args, "--root", str(tmp_path), "--out", str(out), "--figures", str(figs)]) == 0
    assert len(pd.read_csv(out)) == 6
    client = MlflowClient(mlflow_uri)
    assert not any(client.search_runs([e.experiment_id]) for e in client.search_experiments())
