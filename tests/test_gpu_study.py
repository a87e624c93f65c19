"""benchmarks/gpu_study.sh: issue 10's GPU study, run here in its CPU dry-run form."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_study.sh"


def _study(tmp_path: Path, data_root: Path, *args: str, budget: int | None = None):
    env = dict(os.environ, GPU_STUDY_OUT=str(tmp_path / "out"), VSSL_DATA_ROOT=str(data_root))
    env["TMPDIR"] = str(tmp_path)
    env.pop("OUT", None)
    if budget is not None:
        env["GPU_STUDY_BUDGET"] = str(budget)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=480,
    )  # fmt: skip


def test_arguments(data_root, tmp_path):
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--dry-run" in bad.stderr
    epochs = subprocess.run(["bash", str(SCRIPT), "--epochs", "x"], capture_output=True, text=True)
    assert epochs.returncode == 2 and "positive integer" in epochs.stderr
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "prepare.sh" in usage.stdout
    assert usage.stdout.rstrip().endswith("and seeds.md beside it.")
    assert "set -euo" not in usage.stdout  # the header, not the code
    # a budget too small for one seed: nothing starts, and the study says so (both loops)
    for mode in ([], ["--parallel"]):
        run = _study(tmp_path, data_root, "--dry-run", *mode, budget=100)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "seed 0 and later not started" in run.stdout
        assert not (tmp_path / "out" / "seeds.md").exists()


def _tar_text(tar: tarfile.TarFile, name: str) -> str:
    return tar.extractfile(f"./{name}").read().decode()


@pytest.mark.slow
def test_dry_run_on_cpu(data_root, tmp_path):
    """Two seeds of VSSL, BYOL and the floor at toy sizes, side by side (``--parallel``, about
    1.5 minutes; seed 1 starts once seed 0 has logged its first epoch): each seed's probes, the
    variance readout of each VSSL checkpoint, and the seeds table, all in the tarball the device
    tool brings back (no checkpoints or feature arrays in it). The one-seed-after-another loop
    shares every step but the waiting."""
    argv = ["--dry-run", "--parallel", "--epochs", "2", "--seeds", "0 1"]
    run = _study(tmp_path, data_root, *argv)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    marks = ["== seed 0: paper_width", "== seed 1: paper_width", "seed 0 finished (exit 0)"]
    assert [run.stdout.index(m) for m in marks] == sorted(run.stdout.index(m) for m in marks)
    assert "seed 1 finished (exit 0)" in run.stdout
    out = tmp_path / "out"
    with tarfile.open(out / "study.tar.gz") as tar:
        names = tar.getnames()
        assert not [n for n in names if n.endswith((".pt", ".npz"))]
        per_run = pd.read_csv(io.StringIO(_tar_text(tar, "seeds/seeds.csv")))
        for s in (0, 1):
            auroc = json.loads(_tar_text(tar, f"auroc-seed{s}.json"))
            assert 0 <= auroc["auroc"]["student variance (clean)"] <= 1
            assert "mixed" in auroc["information_loss"]
            sets = _tar_text(tar, f"seed{s}/overrides.txt").split()
            assert "pretrain.epochs=2" in sets and "backbone.width=4" in sets
            assert "Overrides: `pretrain.epochs=2`" in _tar_text(tar, f"seed{s}/summary.md")
    assert sorted(zip(per_run["config"], per_run["seed"], strict=True)) == [
        ("byol", 0), ("byol", 1), ("random", 0), ("random", 1), ("vssl", 0), ("vssl", 1)
    ]  # fmt: skip
    assert set(per_run.loc[per_run.config != "random", "epochs"]) == {2}  # complete schedules
    assert per_run.loc[per_run.config == "vssl", "error AUROC"].notna().all()
    assert "VSSL minus BYOL, paired by seed" in (out / "seeds.md").read_text()
    # the stagger: seed 1's runs logged their first line after seed 0's runs logged epoch 1
    with tarfile.open(out / "study.tar.gz") as tar:
        seed0 = [_tar_text(tar, f"seed0/{c}.log") for c in ("vssl", "byol")]
        seed1 = [_tar_text(tar, f"seed1/{c}.log") for c in ("vssl", "byol")]
    epoch1 = max(_stamp(t, "epoch 1/") for t in seed0)
    assert min(_stamp(t, "INFO") for t in seed1) >= epoch1


def _stamp(log: str, marker: str) -> str:
    """The HH:MM:SS.mmm stamp of the first log line holding ``marker``."""
    line = next(ln for ln in log.splitlines() if marker in ln)
    return line.split()[0]
