"""benchmarks/feature_uncertainty.py: the label-free scores any method's features give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("feature_uncertainty.py", "feature_uncertainty_bench")


def _write(folder: Path, method: str, seed: int = 0) -> Path:
    """A feature folder of 200 test images, the odd ones the probe's errors: the errors have
    short features (norm 1 against 3) and lie off the training images (density), and, for
    VSSL, log-variances of 0 against -4."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    d, n = 8, 200
    wrong = np.arange(n) % 2 == 1
    train = np.eye(d)[0] + 0.05 * rng.normal(size=(300, d))
    direction = np.where(wrong[:, None], np.eye(d)[1], np.eye(d)[0])
    test = direction * np.where(wrong, 1.0, 3.0)[:, None] + 0.01 * rng.normal(size=(n, d))
    arrays = {"features": test}
    if method == "vssl":
        arrays["logvar"] = np.where(wrong[:, None], 0.0, -4.0) * np.ones((n, 4))
    np.savez(folder / "test.npz", **arrays)
    np.savez(folder / "train.npz", features=train)
    (folder / "meta.json").write_text(json.dumps({"method": method}))
    sidecar = folder / "probe.uncertainty.csv"
    lines = ["index,label,prediction,correct,mean_variance"]
    lines += [f"{i},0,0,{int(not wrong[i])},0.0" for i in rng.permutation(n)]
    sidecar.write_text("\n".join(lines) + "\n")
    return sidecar


def test_each_score_ranks_the_errors_it_was_built_to_see(bench, tmp_path, capsys):
    byol = _write(tmp_path / "byol", "byol")
    vssl = _write(tmp_path / "vssl", "vssl", seed=1)
    out = tmp_path / "byol.json"
    assert bench.main([str(tmp_path / "byol"), str(byol), "--out", str(out)]) == 0
    a = json.loads(out.read_text())["runs"][0]["auroc"]
    assert a["-feature norm"] == pytest.approx(1.0)
    assert a["-similarity to 20 nearest train images"] == pytest.approx(1.0)
    assert "posterior mean variance (reported)" not in a  # BYOL has no posterior
    assert bench.main([str(tmp_path / "vssl"), str(vssl), "--out", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["method"] == "vssl" and run["error_rate"] == 0.5
    assert run["auroc"]["posterior mean variance (reported)"] == pytest.approx(1.0)
    assert "| -feature norm | 1.000 |" in capsys.readouterr().out


def test_the_density_is_the_mean_similarity_of_the_nearest(bench):
    train = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    test = np.array([[2.0, 0.0]])
    assert bench.density(test, train, k=2) == pytest.approx([0.5])  # cosines 1 and 0
    assert bench.density(test, train, k=1) == pytest.approx([1.0])


def test_runs_of_two_methods_are_refused(bench, tmp_path):
    byol = _write(tmp_path / "byol", "byol")
    vssl = _write(tmp_path / "vssl", "vssl")
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path / "byol"), str(byol), str(tmp_path / "vssl"), str(vssl)])
