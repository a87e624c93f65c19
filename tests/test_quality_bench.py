"""benchmarks/quality.py: learning-rate selection (fast) and the tuning script end to end (slow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality.py", "quality_bench")


def test_lr_choice_edges_and_variants(quality) -> None:
    trials = pd.DataFrame(
        dict(
            entry=["byol"] * 3 + ["simclr"] * 3,
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

    md = quality.tuning_markdown(trials, chosen)
    assert "| byol | 0.3: 30.0, 1: 40.0*, 3: 40.0 |" in md
    assert "1.2: diverged" in md
    variants = quality.tuned_variants(chosen, {"byol": "byol", "simclr": "simclr"})
    assert variants["byol_tuned"] == {
        "method": "byol",
        "set": {"methods.byol.optimizer.base_lr": 1.0},
    }
    # the variants are valid params.yaml entries
    import yaml

    from vssl.config import load_raw, resolve

    tree = load_raw(ROOT / "params.yaml")
    tree["variants"] = {**tree["variants"], **variants}
    p = resolve(tree, profile="smoke", entry="simclr_tuned")
    assert p.optimizer_cfg("simclr")["base_lr"] == 0.12
    assert yaml.safe_load(yaml.safe_dump(variants)) == variants


@pytest.mark.slow
def test_tuning_extends_an_edge_optimum_once(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    text = (ROOT / "params.yaml").read_text()
    cmd = [
        sys.executable, str(SCRIPT), "--profile", "smoke", "--entries", "vssl_nokl",
        "--lr-factors", "0.3", "1", "--extend-edges", "--jobs", "2", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "VSSL_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ROOT / "params.yaml").read_text() == text  # nothing written into the repository
    tuning = json.loads((out / "tuning.json").read_text())
    trials = pd.DataFrame(tuning["trials"])
    grid = trials[trials["lr_source"] == "grid"]
    best = grid.loc[((grid["knn20_top1"] + grid["linear_top1"]) / 2).idxmax(), "lr_factor"]
    # Two grid points: the best is always at an edge, so exactly one more lr is tried,
    # one step (x10/3) further out on the best one's side.
    edge = trials[trials["lr_source"] == "edge"]
    assert len(trials) == 3 and len(edge) == 1
    assert edge["lr_factor"].iloc[0] == (0.09 if best == 0.3 else 3.0)
    assert tuning["chosen"]["vssl_nokl"] in trials["base_lr"].tolist()
    assert tuning["selection"]["extend_edges"] is True
    # The variant's own override (kl: none) reached every trial.
    import torch

    for run in sorted((out / "runs" / "vssl_nokl").iterdir()):
        ck = torch.load(run / "checkpoint.pt", weights_only=True)
        assert ck["variant"] == "vssl_nokl" and ck["config"]["methods"]["vssl"]["kl"] == "none"
    # Each run's test features are deleted unread; only its "-val" carve-out holds a test.npz
    # (the validation part of the train features).
    feature_dirs = sorted((out / "features" / "vssl_nokl").iterdir())
    extracted = [d for d in feature_dirs if not d.name.endswith("-val")]
    assert len(extracted) == 3 and all((d / "train.npz").is_file() for d in extracted)
    assert not any((d / "test.npz").exists() for d in extracted)
    assert "vssl_nokl_tuned" in (out / "tuned_variants.yaml").read_text()
    # A second call resumes: every trial is done, nothing is retrained.
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert (
        again.returncode == 0
        and json.loads((out / "tuning.json").read_text())["chosen"] == (tuning["chosen"])
    )


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
