"""benchmarks/throughput.py times the engine's own step and samples GPU utilisation (no timing
is asserted here: that is the benchmark's job)."""

from __future__ import annotations

import argparse
import os
import stat

import pytest
from benchmark_scripts import load_benchmark


def _load():
    return load_benchmark("throughput.py", "throughput_bench2")


def test_gpu_utilisation_samples_nvidia_smi(tmp_path, monkeypatch):
    throughput = _load()
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 57\necho 12\n")  # two GPUs: the busiest one counts
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    util = throughput.GpuUtilisation(period_s=0.01)
    with util:
        import time

        time.sleep(0.3)
    assert util.samples and util.mean() == 57.0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    none = throughput.GpuUtilisation()
    with none:
        pass
    assert none.mean() is None


def test_ours_is_timed_through_the_engines_step(data_root, monkeypatch):
    """One tiny round: our methods go through vssl.train.engine.train_step and the engine's
    batched augmentation module; the table has the ratios."""
    from vssl.train import engine

    throughput = _load()
    calls = []
    real = engine.train_step

    def spy(*a, **k):
        calls.append(k.get("check") is not None)
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_step", spy)
    args = argparse.Namespace(
        device="cpu", widths=[4], methods=["vssl", "byol-ours", "byol-lightly"],
        augs=["batched"], batch_sizes=[8], steps=1, warmup=1, repeats=1, n_images=32,
        bf16=False, channels_last=False, compile=False, data_root=str(data_root),
    )  # fmt: skip
    pytest.importorskip("lightly")
    res = throughput.run(args)
    assert calls and all(calls)  # (warm-up + timed) steps of vssl and byol-ours, checked
    assert len(calls) == 2 * 2
    runner_aug = {r["aug"] for r in res["rows"]}
    assert runner_aug == {"batched"}
    assert {r["ratio"] for r in res["ratios"]} == {
        "vssl/byol-ours", "byol-ours/byol-lightly", "vssl/byol-lightly"
    }  # fmt: skip
    assert all(r["images_per_s"]["median"] > 0 for r in res["rows"])
    md = throughput.markdown(res)
    assert "| vssl | 4 | 8 | batched |" in md
