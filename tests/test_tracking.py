"""vssl.tracking: run contents, parent links, retries and parallel writers on one SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vssl import tracking
from vssl.config import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


@pytest.fixture()
def params(mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    return load_params(PARAMS, profile="smoke")


def test_flatten():
    flat = tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}, "f": None})
    assert flat == {"a.b": 1, "a.c.d": [1, 2], "e": {}, "f": None}


def test_run_contents_and_parent(params, mlflow_uri, tmp_path):
    from mlflow import MlflowClient

    art = tmp_path / "history.csv"
    art.write_text("epoch,loss\n1,0.5\n")
    with tracking.start_run(
        params, stage="pretrain", dataset="cifar10_mini", method="vssl", seed=3
    ) as run:
        tracking.log_metrics({"loss": 0.5, "nan": float("nan"), "none": None}, step=1)
        tracking.log_metrics({"loss": 0.25}, step=2)
        tracking.log_artifact(art)
        parent = run.info.run_id
    with tracking.start_run(
        params, stage="probe", dataset="cifar10_mini", method="vssl", seed=3, parent_run_id=parent
    ) as child:
        child_id = child.info.run_id

    c = MlflowClient(mlflow_uri)
    r = c.get_run(parent)
    assert r.info.status == "FINISHED"
    tags = r.data.tags
    assert {k: tags[k] for k in ("stage", "dataset", "method", "seed", "profile")} == {
        "stage": "pretrain",
        "dataset": "cifar10_mini",
        "method": "vssl",
        "seed": "3",
        "profile": "smoke",
    }
    assert "git_commit" in tags
    assert (
        tags["git_dirty"] == {True: "true", False: "false", None: "unknown"}[tracking.git_dirty()]
    )
    p = r.data.params
    assert p["pretrain.batch_size"] == "128" and p["methods.vssl.latent_dim"] == "32"
    assert p["seed"] == "3" and "version.torch" in p and "git_commit" in p
    # the host settings that change CPU results in the last digits
    assert p["env.torch_threads"] == str(torch.get_num_threads()) and p["env.cpu"] != ""
    assert [m.value for m in c.get_metric_history(parent, "loss")] == [0.5, 0.25]
    assert "nan" not in r.data.metrics and "none" not in r.data.metrics
    assert [a.path for a in c.list_artifacts(parent)] == ["history.csv"]
    # artifacts go beside the database, not into the working directory
    assert r.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    assert c.get_run(child_id).data.tags["mlflow.parentRunId"] == parent


def test_failed_run_and_reopen(params, mlflow_uri):
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError, match="boom"):
        with tracking.start_run(
            params, stage="pretrain", dataset="d", method="byol", seed=0
        ) as run:
            run_id = run.info.run_id
            raise RuntimeError("boom")
    c = MlflowClient(mlflow_uri)
    assert c.get_run(run_id).info.status == "FAILED"
    with tracking.start_run(
        params, stage="pretrain", dataset="d", method="byol", seed=0, run_id=run_id
    ) as again:
        assert again.info.run_id == run_id
        tracking.log_metrics({"x": 1.0}, step=0)
    assert c.get_run(run_id).info.status == "FINISHED"
    # the reopening records this invocation's code beside the run's first
    tags = c.get_run(run_id).data.tags
    assert tags["resumes"] == "1" and tags["resume1.git_commit"] == tags["git_commit"]
    assert tags["resume1.git_dirty"] == tags["git_dirty"]
    with tracking.start_run(
        params, stage="pretrain", dataset="d", method="byol", seed=0, run_id=run_id
    ):
        pass
    assert c.get_run(run_id).data.tags["resumes"] == "2"
    assert "resume2.git_commit" in c.get_run(run_id).data.tags
    # a run id the store does not know starts a fresh run instead of failing
    with tracking.start_run(
        params, stage="pretrain", dataset="d", method="byol", seed=0, run_id="0" * 32
    ) as fresh:
        assert fresh.info.run_id != "0" * 32


def test_retry_only_on_lock(monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_BASE_S", 0.001)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.with_retry(flaky) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("bad value")

    calls.clear()
    with pytest.raises(ValueError):
        tracking.with_retry(broken)
    assert len(calls) == 1


def test_relative_sqlite_store_lands_beside_the_params_file(
    pristine_mlflow_store, tmp_path, monkeypatch
):
    """`sqlite:///mlflow.db` in params.yaml is the repository's store, wherever a job runs."""
    import shutil

    from mlflow import MlflowClient

    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    repo.mkdir()
    elsewhere.mkdir()
    (repo / "params.yaml").write_text(PARAMS.read_text())
    shutil.copy(pristine_mlflow_store, repo / "mlflow.db")  # the schema, created once
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    monkeypatch.chdir(elsewhere)
    p = load_params("../repo/params.yaml", profile="smoke")
    assert p.mlflow.tracking_uri == "sqlite:///mlflow.db"
    with tracking.start_run(p, stage="probe", dataset="d", method="byol", seed=0) as run:
        run_id = run.info.run_id
    assert list(elsewhere.iterdir()) == []  # nothing in the working directory
    c = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())


_WRITER = textwrap.dedent(
    """
    import sys
    from vssl import tracking
    from vssl.config import load_params
    p = load_params(sys.argv[1], profile="smoke")
    i = int(sys.argv[2])
    with tracking.start_run(p, stage="pretrain", dataset="d", method="vssl", seed=i):
        for step in range(5):
            tracking.log_metrics({"loss": float(i * 10 + step), "acc": 1.0}, step=step)
    """
)


@pytest.mark.slow
def test_parallel_writers_lose_no_runs(tmp_path):
    """Several processes create the schema, the experiment and their runs at once."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "VSSL_DATA_ROOT": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    n = 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(PARAMS), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)
    c = MlflowClient(uri)
    exps = [e for e in c.search_experiments() if e.name == "vssl"]
    assert len(exps) == 1
    runs = c.search_runs([exps[0].experiment_id])
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(n))
    for r in runs:
        seed = int(r.data.tags["seed"])
        hist = c.get_metric_history(r.info.run_id, "loss")
        assert [m.value for m in hist] == [seed * 10 + s for s in range(5)]
        assert r.info.status == "FINISHED"


def test_git_dirty_sees_uncommitted_changes_to_tracked_files(tmp_path: Path) -> None:
    import subprocess

    from vssl.tracking import git_dirty

    assert git_dirty(tmp_path) is None  # not a checkout
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    assert git_dirty(repo) is False
    (repo / "new.py").write_text("untracked files do not count\n")
    assert git_dirty.__wrapped__(repo) is False
    (repo / "a.py").write_text("x = 2\n")
    assert git_dirty.__wrapped__(repo) is True
