"""benchmarks/quality.py: the summary arithmetic (fast) and the script end to end (slow)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_bench"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_summary_statistics_markdown_and_lr_choice(quality) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for config, method, ablation in [
        ("vssl", "vssl", ""),
        ("vssl_no_kl", "vssl", "no_kl"),
        ("random", "random", ""),
    ]:
        for seed in range(3):
            rows.append(
                dict(
                    config=config,
                    method=method,
                    ablation=ablation,
                    seed=seed,
                    base_lr=None if method == "random" else 1.0,
                    lr_source="n/a" if method == "random" else "default",
                    status="done",
                    knn20_top1=float(rng.uniform(10, 90)),
                    linear_top1=float(rng.uniform(10, 90)),
                )
            )
    # A diverged run must be counted as failed and kept out of the means.
    rows.append({**rows[3], "seed": 3, "status": "nonfinite", "knn20_top1": 99.0})
    df = pd.DataFrame(rows)
    summary = quality.summarize(df)
    assert list(summary["config"]) == ["vssl", "vssl_no_kl", "random"]
    ok = df[df["status"] == "done"]
    for m in ("knn20_top1", "linear_top1"):
        floor = ok.loc[ok["config"] == "random", m].mean()
        for _, r in summary.iterrows():
            vals = ok.loc[ok["config"] == r["config"], m].to_numpy()
            assert r[f"{m}_mean"] == pytest.approx(vals.mean())
            assert r[f"{m}_std"] == pytest.approx(vals.std(ddof=1))
            assert r[f"{m}_delta"] == pytest.approx(vals.mean() - floor)
    ablation = summary.set_index("config").loc["vssl_no_kl"]
    assert (ablation["n_seeds"], ablation["n_failed"]) == (3, 1)

    md = quality.summary_markdown(summary, caption="caption")
    lines = md.strip().splitlines()
    assert lines[0] == "caption"
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 2 + 3  # header, rule, one row per config
    vssl = summary.iloc[0]
    assert f"{vssl['knn20_top1_mean']:.1f} ± {vssl['knn20_top1_std']:.1f}" in table[2]
    assert f"{vssl['knn20_top1_delta']:+.1f}" in table[2]
    assert "no kl" in table[3] and "1 diverged" in table[3]
    assert "(floor)" in table[4]

    trials = pd.DataFrame(
        dict(
            config=["byol"] * 3 + ["simclr"] * 3,
            status=["done"] * 5 + ["nonfinite"],
            base_lr=[0.3, 1.0, 3.0, 0.12, 0.4, 1.2],
            lr_factor=[0.3, 1.0, 3.0] * 2,
            knn20_top1=[30.0, 40.0, 40.0, 50.0, 20.0, math.nan],
            linear_top1=[30.0, 40.0, 40.0, 10.0, 20.0, math.nan],
        )
    )
    chosen = quality.select_lrs(trials, "mean")
    assert chosen["byol"]["base_lr"] == 1.0  # tie with 3.0: the default wins
    assert chosen["simclr"]["base_lr"] == 0.12  # (50+10)/2 > (20+20)/2; the diverged lr is out
    assert quality.select_lrs(trials, "linear_top1")["simclr"]["base_lr"] == 0.4

    # --extend-edges: simclr's best is the grid's smallest factor -> one step below it; byol's
    # best sits inside the grid -> nothing; a best at the top -> one step above.
    assert quality.edge_extensions(trials, [0.3, 1.0, 3.0]) == {"simclr": [0.09]}
    grid = trials.assign(lr_factor=[0.1, 0.3, 1.0, 0.3, 1.0, 3.0], status="done")
    grid.loc[0, ["knn20_top1", "linear_top1"]] = 80.0  # byol: best at 0.1
    grid.loc[5, ["knn20_top1", "linear_top1"]] = 90.0  # simclr: best at 3
    assert quality.edge_extensions(grid, [0.1, 0.3, 1.0, 3.0]) == {"byol": [0.03], "simclr": [9.0]}
    # An extension already tried does not extend again: only grid factors count.
    tried = pd.concat([grid, grid.iloc[[0]].assign(lr_factor=0.03, knn20_top1=99.0)])
    assert quality.edge_extensions(tried, [0.1, 0.3, 1.0, 3.0]) == {"byol": [0.03], "simclr": [9.0]}

    with pytest.raises(quality.StudyError, match="known: .*barlow_twins"):
        quality.select_configs(["byol", "dino"], [])
    with pytest.raises(quality.StudyError, match="known: .*no_kl"):
        quality.select_configs(["vssl"], ["no_prior"])


@pytest.mark.slow
def test_study_end_to_end_and_resume(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--dataset", "cifar10_mini",
        "--seeds", "0",
        "--epochs", "1",
        "--train-subset", "128",
        "--test-subset", "100",
        "--batch-size", "64",
        "--width", "4",
        "--methods", "vssl", "random",
        "--ablations", "no_kl",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "VSSL_DATA_ROOT": str(data_root)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ESTIMATE from the first run" in proc.stdout

    results = pd.read_csv(out / "results.csv")
    assert sorted(results["config"]) == ["random", "vssl", "vssl_no_kl"]
    assert (results["status"] == "done").all()
    for m in ("knn20_top1", "linear_top1", "knn200_top1"):
        assert results[m].between(0, 100).all(), results[m]
    assert (results["n_test"] == 100).all() and (results["n_train"] == 128).all()
    assert (results["run_s"] > 0).all()
    summary = pd.read_csv(out / "summary.csv")
    floor = summary.set_index("config").loc["random"]
    assert floor["knn20_top1_delta"] == 0.0
    md = (out / "summary.md").read_text()
    assert "vssl − no kl" in md and "(floor)" in md
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    study = json.loads((out / "study.json").read_text())
    assert study["executed"] == 3 and study["wall_s"] > 0
    assert (out / "mlflow.db").is_file()

    # A second invocation finds every probe JSON and runs nothing.
    t0 = time.perf_counter()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 of 3 runs already done" in again.stdout
    assert time.perf_counter() - t0 < 60
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)

    # Other settings in the same folder are refused before any work.
    clash = [c if c != "128" else "256" for c in cmd]
    refused = subprocess.run(clash, cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "written for other settings" in refused.stderr


@pytest.mark.slow
def test_tuning_extends_an_edge_optimum_once(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    cmd = [
        sys.executable, str(SCRIPT), "--dataset", "cifar10_mini", "--epochs", "1",
        "--train-subset", "128", "--test-subset", "100", "--batch-size", "64", "--width", "4",
        "--methods", "vssl", "--tune", "--lr-factors", "0.3", "1", "--extend-edges",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "VSSL_DATA_ROOT": str(data_root)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tuning = json.loads((out / "tuning.json").read_text())
    trials = pd.DataFrame(tuning["trials"])
    grid = trials[trials["lr_source"] == "grid"]
    best = grid.loc[((grid["knn20_top1"] + grid["linear_top1"]) / 2).idxmax(), "lr_factor"]
    # Two grid points: the best is always at an edge, so exactly one more lr is tried,
    # one step (x10/3) further out on the best one's side.
    edge = trials[trials["lr_source"] == "edge"]
    assert len(trials) == 3 and len(edge) == 1
    assert edge["lr_factor"].iloc[0] == (0.09 if best == 0.3 else 3.0)
    assert tuning["chosen"]["vssl"] in trials["base_lr"].tolist()
    assert tuning["selection"]["extend_edges"] is True
    # Each run's test features are deleted unread; only its "-val" carve-out holds a test.npz
    # (the validation part of the train features).
    feature_dirs = sorted((out / "tune" / "features" / "vssl").iterdir())
    extracted = [d for d in feature_dirs if not d.name.endswith("-val")]
    assert len(extracted) == 3 and all((d / "train.npz").is_file() for d in extracted)
    assert not any((d / "test.npz").exists() for d in extracted)


def test_carve_validation_uses_train_only(quality, tmp_path: Path) -> None:
    from vssl.eval.features import FeatureSet, load_feature_dir, save_features

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)  # 100 samples, 4 balanced classes
    feats = rng.normal(size=(100, 6)).astype(np.float32)
    feats[:, 0] = np.arange(100)  # row id, to check which rows went where
    mu, logvar = feats[:, :3].copy(), np.zeros((100, 3), np.float32)
    meta = {"method": "vssl", "seed": 0}
    full = tmp_path / "full"
    save_features(full / "train.npz", FeatureSet(feats, labels, mu, logvar, meta))
    save_features(
        full / "test.npz", FeatureSet(feats[:10], labels[:10], mu[:10], logvar[:10], meta)
    )

    info = quality.carve_validation(full, tmp_path / "val", 0.2, seed=0)
    assert info == {"n_fit": 80, "n_val": 20}
    assert not (full / "test.npz").exists()  # tuning never gets to read the test split
    fit, val = load_feature_dir(tmp_path / "val")
    ids = np.concatenate([fit.features[:, 0], val.features[:, 0]])
    assert sorted(ids.astype(int)) == list(range(100))  # a partition of train
    assert np.bincount(val.labels).tolist() == [5, 5, 5, 5]  # stratified
    np.testing.assert_array_equal(val.mu, mu[val.features[:, 0].astype(int)])
    assert val.meta["n_test"] == 20 and val.meta["val_fraction"] == 0.2
    again = tmp_path / "again"
    save_features(again / "train.npz", FeatureSet(feats, labels, mu, logvar, meta))
    quality.carve_validation(again, tmp_path / "val2", 0.2, seed=0)
    np.testing.assert_array_equal(load_feature_dir(tmp_path / "val2")[1].features, val.features)


def test_study_reuses_the_tuning_grid_pretraining_only_when_identical(
    quality, tmp_path: Path
) -> None:
    argv = ["--dataset", "cifar10_mini", "--seeds", "0", "1", "--epochs", "1"]
    argv += ["--train-subset", "64", "--width", "4", "--methods", "vssl", "--ablations", "no_kl"]
    tune_args = quality.parse_args([*argv, "--out", str(tmp_path), "--tune"])
    study_args = quality.parse_args([*argv, "--out", str(tmp_path)])
    base = quality.load_params(
        quality.ROOT / "params.yaml", profile="quick", overrides=quality.budget_overrides(tune_args)
    )
    configs = quality.select_configs(["vssl"], ["no_kl"])
    grid = quality.plan_runs(tune_args, configs[:1], base, {})  # the ablation is not tuned
    chosen = grid[1]  # lr factor 1
    for run in grid:  # a finished grid: a checkpoint and a "done" record per lr
        (run.run_dir).mkdir(parents=True)
        (run.run_dir / "checkpoint.pt").write_bytes(f"ckpt {run.base_lr}".encode())
        quality.write_json(run.record, {"status": "done", "overrides": run.overrides})
    tuned = {"vssl": chosen.base_lr}
    study = {
        (r.config.name, r.seed): r for r in quality.plan_runs(study_args, configs, base, tuned)
    }

    vssl0 = study[("vssl", 0)]
    assert vssl0.overrides == chosen.overrides
    assert quality.tuned_pretraining(vssl0, study_args) == chosen.run_dir
    assert quality.tuned_pretraining(study[("vssl", 1)], study_args) is None  # another seed
    # The ablation inherits VSSL's tuned lr, but not its pretraining, even when a grid folder
    # sits where its own would be: the recorded overrides are VSSL's, not the ablation's.
    ablation = study[("vssl_no_kl", 0)]
    assert ablation.lr_source == "inherited" and ablation.overrides != chosen.overrides
    shutil.copytree(chosen.run_dir, tmp_path / "tune" / "runs" / "vssl_no_kl" / chosen.run_dir.name)
    quality.write_json(
        tmp_path / "tune" / "records" / "vssl_no_kl" / f"{chosen.run_dir.name}.json",
        {"status": "done", "overrides": chosen.overrides},
    )
    assert quality.tuned_pretraining(ablation, study_args) is None
    off = quality.parse_args([*argv, "--out", str(tmp_path), "--no-reuse-tuning"])
    assert quality.tuned_pretraining(vssl0, off) is None

    quality.copy_run_dir(chosen.run_dir, vssl0.run_dir)
    assert (vssl0.run_dir / "checkpoint.pt").read_bytes() == f"ckpt {chosen.base_lr}".encode()
    assert quality.tuned_pretraining(vssl0, study_args) is None  # already has its own

    # A grid run recorded under other settings (or unfinished) is not taken.
    other = study[("vssl", 0)]
    shutil.rmtree(other.run_dir)
    quality.write_json(chosen.record, {"status": "done", "overrides": [*chosen.overrides, "x=1"]})
    assert quality.tuned_pretraining(other, study_args) is None
    quality.write_json(chosen.record, {"status": "running", "overrides": chosen.overrides})
    assert quality.tuned_pretraining(other, study_args) is None
