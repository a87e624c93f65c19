"""benchmarks/variance_aggregations.py: other summaries of the posterior log-variance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("variance_aggregations.py", "variance_aggregations_bench")


def _write(folder: Path, seed: int = 0) -> Path:
    """200 test images, half of them errors; the errors' log-variance is raised in only 4 of
    64 coordinates, so the mean over coordinates dilutes what the top tenth sees."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    d, n = 64, 200
    wrong = np.arange(n) % 2 == 1
    lv = rng.normal(-1.0, 0.5, (n, d))
    lv[wrong, :4] += 1.5
    train = rng.normal(-1.0, 0.5, (500, d))
    mu = rng.normal(size=(n, 8))
    np.savez(folder / "test.npz", logvar=lv, mu=mu)
    np.savez(folder / "train.npz", logvar=train, mu=rng.normal(size=(500, 8)))
    sidecar = folder / "probe.uncertainty.csv"
    lines = ["index,label,prediction,correct,mean_variance"]
    order = rng.permutation(n)  # the sidecar may list the images in any order
    lines += [f"{i},0,0,{int(not wrong[i])},0.0" for i in order]
    sidecar.write_text("\n".join(lines) + "\n")
    return sidecar


def test_summaries_see_what_the_mean_dilutes(bench, tmp_path):
    sidecar = _write(tmp_path / "f")
    run = bench.score_run(tmp_path / "f", sidecar)
    a = run["auroc"]
    assert run["n"] == 200 and run["error_rate"] == 0.5
    assert a["top tenth, mean log-variance"] > a["mean log-variance"] + 0.1
    assert a["max log-variance"] > 0.8
    assert 0.35 < a["-|mu| (label-free baseline)"] < 0.65  # mu knows nothing here
    for v in a.values():
        assert 0.0 <= v <= 1.0


def test_cli_prints_the_table_and_writes_json(bench, tmp_path, capsys):
    pairs = []
    for k in range(2):
        pairs += [str(tmp_path / f"f{k}"), str(_write(tmp_path / f"f{k}", seed=k))]
    out = tmp_path / "agg.json"
    assert bench.main([*pairs, "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| top tenth, mean log-variance |" in table and "± " in table
    res = json.loads(out.read_text())
    assert len(res["runs"]) == 2 and res["summary"]["max log-variance"]["mean"] > 0.8
    with pytest.raises(SystemExit):
        bench.main(pairs[:3])
