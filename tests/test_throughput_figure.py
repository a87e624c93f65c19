"""benchmarks/throughput.py's figure, from saved results (no timing here: that is a benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark


def _load():
    return load_benchmark("throughput.py", "throughput_bench")


def _row(method: str, aug: str, ips: float) -> dict:
    spread = {"median": ips, "min": ips - 1, "max": ips + 2, "n": 3}
    return {"method": method, "aug": aug, "width": 16, "images_per_s": spread, "data_share": {}}


def test_figure_draws_one_bar_and_one_spread_line_per_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    throughput = _load()
    res = {"device": "cpu", "rows": [_row(m, a, 10.0 + i) for i, (m, a) in enumerate(
        [("vssl", "none"), ("byol-ours", "none"), ("vssl", "batched"), ("byol-ours", "batched")]
    )]}  # fmt: skip
    gpu = {**res, "device": "gpu"}
    out = throughput.figure([res, gpu], tmp_path / "t.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".t.png*"))  # the temporary file was renamed away

    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)  # keep the figure to inspect it
    throughput.figure([res], tmp_path / "u.png")
    (ax,) = drawn[0].axes
    bars = [b for c in ax.containers for b in c]
    assert sorted(round(b.get_height(), 3) for b in bars) == [10.0, 11.0, 12.0, 13.0]
    spreads = sorted(tuple(line.get_ydata()) for line in ax.lines)
    assert spreads == [(9.0, 12.0), (10.0, 13.0), (11.0, 14.0), (12.0, 15.0)]
    monkeypatch.undo()
    plt.close(drawn[0])
