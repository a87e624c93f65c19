"""benchmarks/gpu_check.sh: the GPU check script, run here in its CPU dry-run form."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_arguments():
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--dry-run" in bad.stderr
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "prepare.sh" in usage.stdout
    assert "--with-folder" in usage.stdout and "--only-folder" in bad.stderr
    assert "--with-epoch-costs" in usage.stdout and usage.stdout.rstrip().endswith("into $OUT.")
    assert "set -euo" not in usage.stdout  # the header, not the code


@pytest.mark.slow
def test_dry_run_on_cpu(data_root, tmp_path):
    """Every step at toy sizes on the CPU (about a minute): the throughput table of the three
    BYOL/VSSL implementations, two short engine runs with their steady-state images/s and
    their history, (--with-profile) the profiled step of each, (--with-tests) the CUDA-only
    tests, skipped here, (--with-epoch-costs) the work between epochs on tiled data and
    (--with-folder) the image-folder data path."""
    env = dict(os.environ, GPU_CHECK_OUT=str(tmp_path / "out"), VSSL_DATA_ROOT=str(data_root))
    env["TMPDIR"] = str(tmp_path)
    env.pop("OUT", None)
    run = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--with-profile", "--with-tests", "--with-epoch-costs",
         "--with-folder"],
        cwd=ROOT, env=env,
        capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "out"
    table = json.loads((out / "throughput-cpu.json").read_text())
    assert {r["method"] for r in table["rows"]} >= {"vssl", "byol-ours"}
    assert {r["aug"] for r in table["rows"]} == {"none", "batched"}
    if "byol-lightly" in {r["method"] for r in table["rows"]}:  # lightly's own data path too
        shipped = json.loads((out / "throughput-shipped-cpu.json").read_text())
        assert {(r["method"], r["aug"]) for r in shipped["rows"]} == {
            ("byol-ours", "shipped"), ("byol-lightly", "shipped")
        }  # fmt: skip
    for method in ("byol", "vssl"):  # the engine runs, one batch size in the dry run
        m = json.loads((out / f"metrics-{method}-b32.json").read_text())
        assert m["images_per_second_steady"] > 0 and m["device"] == "cpu"
        assert m["compile"] == "eager"  # compile: auto compiles on CUDA only
        history = (out / f"history-{method}-b32.csv").read_text().splitlines()
        assert len(history) == 1 + m["epochs"] and "loss" in history[0]
        assert f"engine {method}-b32: steady-state" in run.stdout
    assert "| ratio |" in run.stdout
    for method in ("byol", "vssl"):  # --with-profile: the engine's step under the profiler
        prof = json.loads((out / f"profile-{method}.json").read_text())
        assert prof["method"] == method and prof["phases_per_step_ms"]["backward"]["host_ms"] > 0
    # --with-tests: the CUDA-only tests were collected and, without CUDA, skipped
    assert "7 skipped" in (out / "pytest-cuda.log").read_text()
    costs = (out / "epoch-costs.log").read_text()  # --with-epoch-costs
    assert "cifar10-mini x2:" in costs and "of training time" in costs
    assert json.loads((out / "snapshot-cost.json").read_text())["state_mb"] > 0
    folder = json.loads((out / "folder-augment-cpu.json").read_text())  # --with-folder
    rows = {r["path"]: r for r in folder["rows"]}
    assert set(rows) == {"decode", "per_sample", "split workers", "split device", "split loader"}
    assert all(r["img_s"] > 0 for r in rows.values())


@pytest.mark.slow
def test_only_the_epoch_costs(data_root, tmp_path):
    """--only-epoch-costs (about 25 s here): the state copy and the work between epochs, and
    neither the throughput table nor the engine runs."""
    env = dict(os.environ, GPU_CHECK_OUT=str(tmp_path / "out"), VSSL_DATA_ROOT=str(data_root))
    env["TMPDIR"] = str(tmp_path)
    env.pop("OUT", None)
    run = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--only-epoch-costs"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".csv") == [
        "epoch-costs.log", "snapshot-cost.json", "snapshot-cost.log"
    ]  # fmt: skip
    assert "fresh copies / snapshot (host held)" in run.stdout
    assert "of training time" in (out / "epoch-costs.log").read_text()
