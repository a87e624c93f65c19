"""`vssl pretrain --resume`: a run stopped half-way and resumed equals an uninterrupted run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from vssl.cli import main

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
TINY = [
    "backbone.width=4",
    "data.train_subset=96",
    "data.test_subset=40",
    "pretrain.batch_size=32",
    "pretrain.knn_every=1",
    "pretrain.checkpoint_every=1",
]
# Columns that measure time, not training.
TIMING = {"images_per_second", "epoch_time_s", "wall_time_s", "train_time_s", "mlflow_run_id"}


@pytest.fixture(scope="module")
def pristine_mlflow_store(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def args(out: Path, epochs: int = 2, method: str = "vssl", sets=(), extra=()) -> list[str]:
    a = ["pretrain", "--params", str(PARAMS), "--profile", "smoke", "--dataset", "cifar10_mini"]
    a += ["--method", method, "--seed", "3", "--out", str(out), "--epochs", str(epochs)]
    for s in [*TINY, *sets]:
        a += ["--set", s]
    return a + list(extra)


def history(out: Path) -> list[dict]:
    with open(out / "history.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def test_resume_equals_uninterrupted(smoke_params, mlflow_uri, tmp_path):
    """VSSL samples z = mu + sigma * eps, so this also checks the RNG streams on resume."""
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(args(full)) == 0
    assert main(args(split, extra=["--stop-after", "1"])) == 0
    half = torch.load(split / "checkpoint.pt", weights_only=True)
    assert half["epoch"] == 1 and not half["complete"] and not (split / "metrics.json").exists()
    assert len(history(split)) == 1
    assert main(args(split, extra=["--resume"])) == 0

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["online_probe"]["model"].items():
        assert torch.equal(v, b["online_probe"]["model"][k]), k
    assert a["scheduler"] == b["scheduler"] and a["global_step"] == b["global_step"] == 6
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((split / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if k not in TIMING} == {
        k: v for k, v in mb.items() if k not in TIMING
    }
    assert history(full) == history(split) and len(history(full)) == 2
    # the resumed run continued the same MLflow run
    assert b["mlflow_run_id"] == half["mlflow_run_id"]
    # and the numbers are not trivially equal: another seed trains different weights
    other = tmp_path / "other"
    assert main(args(other, epochs=1, extra=["--seed", "4"])) == 0
    c = torch.load(other / "checkpoint.pt", weights_only=True)
    assert not torch.equal(
        c["model"]["backbone.conv1.weight"], half["model"]["backbone.conv1.weight"]
    )


def test_resume_rejects_mismatches(smoke_params, mlflow_uri, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(out, extra=["--stop-after", "1"])) == 0
    before = (out / "checkpoint.pt").read_bytes()
    cases = [
        (args(out, sets=["methods.vssl.beta=0.5"], extra=["--resume"]), "methods.vssl.beta"),
        (args(out, epochs=3, extra=["--resume"]), "schedules 2 epochs, this run 3"),
        (args(out, method="byol", extra=["--resume"]), "method='vssl', expected 'byol'"),
        (args(out), "already holds a run"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, message
        assert message in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
    # logging cadence may change on resume
    ok = args(out, sets=["pretrain.log_every=1"], extra=["--resume"])
    assert main(ok) == 0 and (out / "metrics.json").exists()


def test_resume_of_complete_run_is_a_no_op(smoke_params, mlflow_uri, tmp_path):
    out = tmp_path / "run"
    assert main(args(out, epochs=1)) == 0
    ckpt = (out / "checkpoint.pt").read_bytes()
    metrics = (out / "metrics.json").read_text()
    (out / "metrics.json").unlink()
    assert main(args(out, epochs=1, extra=["--resume"])) == 0
    assert (out / "checkpoint.pt").read_bytes() == ckpt
    assert (out / "metrics.json").read_text() == metrics  # restored from the checkpoint


def test_resume_without_checkpoint_starts_fresh(smoke_params, mlflow_uri, tmp_path):
    out = tmp_path / "run"
    assert main(args(out, epochs=1, extra=["--resume"])) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
