"""Shared fixtures. Real data comes from ../shared/data (beside the project root), never the net."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VSSL_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (SHARED_DATA / "FashionMNIST").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture()
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An isolated MLflow store per test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture()
def smoke_params(data_root: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch):
    """The repository's params.yaml resolved with the smoke profile and the shared data root."""
    from vssl.config import load_params

    monkeypatch.setenv("VSSL_DATA_ROOT", str(data_root))
    return load_params(ROOT / "params.yaml", profile="smoke")
