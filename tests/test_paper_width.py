"""benchmarks/paper_width.py: the paper-settings check keeps the paper's schedule and reports it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("paper_width.py", "paper_width_bench")


def test_pretrain_command_stops_early_on_the_paper_schedule(bench, tmp_path: Path) -> None:
    cmd = bench.pretrain_cmd("vssl_2025", tmp_path, seed=1, epochs=20, precision="bf16")
    args = " ".join(cmd)
    # the paper profile's 1,000-epoch schedule, cut after 20 epochs (not a 20-epoch schedule)
    assert "--profile paper" in args and "--stop-after 20" in args
    assert "--epochs" not in cmd
    assert "--method vssl_2025" in args and "--seed 1" in args
    assert "pretrain.mixed_precision=bf16" in args
    assert f"--out {tmp_path / 'vssl_2025'}" in args


def _history(kl: list[float], spread: list[float]) -> pd.DataFrame:
    n = len(kl)
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "loss": kl,
            "kl": kl,
            "logvar_student": [-1.5 - 0.1 * i for i in range(n)],
            "logvar_teacher": [-2.0] * n,
            "z_spread": spread,
            "online_probe_top1": [10.0 + i for i in range(n)],
            "images_per_second": [20.0, 30.0, 32.0, 31.0][:n],
            "epoch_time_s": [100.0] * n,
        }
    )


def test_report_finds_the_kl_peak_and_reads_the_probes(bench, tmp_path: Path) -> None:
    (tmp_path / "collapsing").mkdir()
    _history([60, 1330, 400, 16], [0.6, 0.1, 0.01, 0.003]).to_csv(
        tmp_path / "collapsing" / "history.csv", index=False
    )
    (tmp_path / "stable").mkdir()
    _history([7.0, 3.0, 1.5, 1.0], [0.66, 0.8, 0.9, 0.93]).to_csv(
        tmp_path / "stable" / "history.csv", index=False
    )
    (tmp_path / "random").mkdir()  # the untrained floor: a history with a header only
    (tmp_path / "random" / "history.csv").write_text("epoch,loss,z_spread,images_per_second\n")
    (tmp_path / "probes").mkdir()
    probe = {"linear_top1": 41.25, "knn20_top1": 35.5, "uncertainty_error_auroc": 0.5612}
    (tmp_path / "probes" / "stable.json").write_text(json.dumps(probe))
    floor = {"linear_top1": 33.7, "knn20_top1": 31.1}
    (tmp_path / "probes" / "random.json").write_text(json.dumps(floor))

    bench.report(bench.argparse.Namespace(out=str(tmp_path)))

    text = (tmp_path / "summary.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 0
    rows = [
        [c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line[:1] == "|"
    ]
    header, table = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[2:]}
    assert header[0] == "" and set(table) == {"collapsing", "stable", "random"}
    collapsing, stable = table["collapsing"], table["stable"]
    assert collapsing["KL first -> max (epoch) -> last"] == "60 -> 1.33e+03 (2) -> 16"
    assert collapsing["z_spread first -> min -> last"] == "0.600 -> 0.003 -> 0.003"
    assert stable["KL first -> max (epoch) -> last"] == "7 -> 7 (1) -> 1"
    assert float(stable["linear top-1"]) == 41.2 and float(stable["kNN-20 top-1"]) == 35.5
    assert float(stable["error AUROC (posterior variance)"]) == 0.561
    assert collapsing["linear top-1"] == "-"  # no probe file for it
    assert (
        table["random"]["epochs"] == "0"
        and table["random"]["KL first -> max (epoch) -> last"] == "-"
    )
    assert float(table["random"]["linear top-1"]) == 33.7
    # steady-state throughput leaves the first epoch out: median of 30, 32, 31
    assert float(stable["images/s (epochs 2+, median)"]) == 31.0


def test_checkpoint_prefers_the_complete_one(bench, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no checkpoint"):
        bench.checkpoint(tmp_path)
    (tmp_path / "checkpoint.partial.pt").write_bytes(b"")
    assert bench.checkpoint(tmp_path).name == "checkpoint.partial.pt"  # stopped early
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert bench.checkpoint(tmp_path).name == "checkpoint.pt"


def test_report_without_runs_is_a_clear_error(bench, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no <config>/history.csv"):
        bench.report(bench.argparse.Namespace(out=str(tmp_path)))
