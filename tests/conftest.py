"""Shared fixtures. Real data comes from ../shared/data (beside the project root), never the net."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VSSL_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


# CI sets VSSL_REQUIRE_DATA=1 (.ci/run): there a missing data folder fails the data-backed
# tests instead of skipping them, so the end-to-end tests cannot pass by not running.
REQUIRE_DATA = os.environ.get("VSSL_REQUIRE_DATA", "") not in ("", "0")


def _no_data(message: str) -> None:
    if REQUIRE_DATA:
        pytest.fail(f"{message} (VSSL_REQUIRE_DATA is set)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (SHARED_DATA / "FashionMNIST").is_dir():
        _no_data(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture()
def cifar_mini_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data root when it holds cifar10-mini (Fashion-MNIST not needed), as VSSL_DATA_ROOT:
    what a bare GPU machine gets carried (``VSSL_TEST_DATA=.devdata``)."""
    if not (SHARED_DATA / "cifar10-mini" / "train.npz").is_file():
        _no_data(f"cifar10-mini not found under {SHARED_DATA}")
    monkeypatch.setenv("VSSL_DATA_ROOT", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(scope="session")
def pristine_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema created once (creating it takes ~7 s)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def mlflow_uri(pristine_mlflow_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An isolated MLflow store per test, copied from the pristine one."""
    db = tmp_path / "mlflow.db"
    shutil.copy(pristine_mlflow_store, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture()
def smoke_params(data_root: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch):
    """The repository's params.yaml resolved with the smoke profile and the shared data root."""
    from vssl.config import load_params

    monkeypatch.setenv("VSSL_DATA_ROOT", str(data_root))
    return load_params(ROOT / "params.yaml", profile="smoke")
