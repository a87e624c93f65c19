"""benchmarks/posterior_propagation.py: the posterior pushed through label-free clusters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("posterior_propagation.py", "posterior_propagation_bench")


def _write(folder: Path, seed: int = 0) -> Path:
    """Training means in two clusters (around +e1 and -e1); 200 test images all at one mean
    direction between them, half with a small and half with a large variance, the large ones
    the errors: only the per-image variance can tell them apart."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    d, n = 16, 200
    e1, e2 = np.eye(d)[0], np.eye(d)[1]
    train = np.concatenate(
        [e1 + 0.05 * rng.normal(size=(300, d)), -e1 + 0.05 * rng.normal(size=(300, d))]
    )
    wrong = np.arange(n) % 2 == 1
    mu = np.tile(30.0 * (0.1 * e1 + e2), (n, 1))
    logvar = np.where(wrong[:, None], 0.0, -6.0) * np.ones((n, d))
    np.savez(folder / "test.npz", logvar=logvar, mu=mu)
    np.savez(folder / "train.npz", logvar=np.zeros((600, d)), mu=train)
    sidecar = folder / "probe.uncertainty.csv"
    lines = ["index,label,prediction,correct,mean_variance"]
    lines += [f"{i},0,0,{int(not wrong[i])},0.0" for i in rng.permutation(n)]
    sidecar.write_text("\n".join(lines) + "\n")
    return sidecar


def test_only_the_own_variance_ranks_errors_that_only_it_knows(bench, tmp_path):
    sidecar = _write(tmp_path / "f")
    run = bench.score_run(tmp_path / "f", sidecar, clusters=[2], samples=32, scale="sphere", seed=0)
    a = run["auroc"]
    assert run["n"] == 200 and run["error_rate"] == 0.5
    assert a["k=2: assignment entropy, own variance"] > 0.9
    assert abs(a["k=2: assignment entropy, shared variance"] - 0.5) < 0.15
    assert a["k=2: -k-means margin"] == pytest.approx(0.5)  # one direction for all: ties
    assert a["mean variance (reported)"] == pytest.approx(1.0)


def test_entropy_and_angles(bench):
    rng = np.random.default_rng(0)
    cents = np.eye(4)[:2]
    side = np.tile([2.0, 1.0, 0.0, 0.0], (5, 1))  # nearer the first centroid
    tight = bench.draws(side, np.full((5, 4), -20.0), 16, "sphere", rng)
    assert np.allclose(bench.assignment_entropy(tight, cents), 0.0)  # every draw on one side
    between = np.tile([1.0, 1.0, 0.0, 0.0], (5, 1))
    wide = bench.draws(between, np.full((5, 4), 2.0), 400, "sphere", rng)
    assert np.all(bench.assignment_entropy(wide, cents) > 0.6)  # near log 2 = 0.69
    # at the raw scale a long mean barely turns: the angle the script reports
    far = np.tile([100.0, 0.0, 0.0, 0.0], (50, 1))
    _, raw = bench.scores(far, np.zeros((50, 4)), np.eye(4), [2], 16, "raw")
    _, sphere = bench.scores(far, np.zeros((50, 4)), np.eye(4), [2], 16, "sphere")
    assert raw < 3.0 < 20.0 < sphere


def test_cli_prints_the_table_and_writes_json(bench, tmp_path, capsys):
    pairs = []
    for k in range(2):
        pairs += [str(tmp_path / f"f{k}"), str(_write(tmp_path / f"f{k}", seed=k))]
    out = tmp_path / "prop.json"
    assert bench.main([*pairs, "--clusters", "2", "--samples", "16", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "median angle" in table and "| k=2: assignment entropy, own variance |" in table
    res = json.loads(out.read_text())
    assert len(res["runs"]) == 2
    assert res["summary"]["k=2: assignment entropy, own variance"]["mean"] > 0.9
    with pytest.raises(SystemExit):
        bench.main(pairs[:3])
