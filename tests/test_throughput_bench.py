"""benchmarks/throughput.py times the engine's own step and samples GPU utilisation (no timing
is asserted here: that is the benchmark's job)."""

from __future__ import annotations

import argparse
import math
import os
import stat

import pytest
import torch
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

    clips = []

    def spy(*a, **k):
        calls.append(k.get("check") is not None)
        clips.append(None if k.get("clip") is None else k["clip"][1])
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_step", spy)
    args = argparse.Namespace(
        device="cpu", widths=[4], methods=["vssl", "byol-ours", "byol-lightly"],
        augs=["batched"], batch_sizes=[8], steps=1, warmup=1, repeats=1, n_images=32,
        bf16=False, channels_last=False, compile=False, data_root=str(data_root),
        loader_workers=0,
    )  # fmt: skip
    pytest.importorskip("lightly")
    res = throughput.run(args)
    assert calls and all(calls)  # (warm-up + timed) steps of vssl and byol-ours, checked
    assert len(calls) == 2 * 2
    # as in the engine: VSSL clips at 1.0, BYOL's norm is measured (inf: not clipped)
    assert sorted(clips) == [1.0, 1.0, math.inf, math.inf]
    runner_aug = {r["aug"] for r in res["rows"]}
    assert runner_aug == {"batched"}
    assert {r["ratio"] for r in res["ratios"]} == {
        "vssl/byol-ours", "byol-ours/byol-lightly", "vssl/byol-lightly"
    }  # fmt: skip
    assert all(r["images_per_s"]["median"] > 0 for r in res["rows"])
    md = throughput.markdown(res)
    assert "| vssl | 4 | 8 | batched |" in md


def test_shipped_gives_lightly_its_own_transforms_and_ours_the_engines(data_root, monkeypatch):
    """``--augs shipped``: lightly's BYOL is fed by lightly's BYOLTransform through a
    DataLoader, ours by the engine's batched augmentation; both get normalised 32 px views."""
    pytest.importorskip("lightly")
    from lightly.transforms import byol_transform

    from vssl.augment import TensorTwoViewAugment

    throughput = _load()
    lightly_calls, engine_calls = [], []
    real_lightly, real_engine = byol_transform.BYOLTransform.__call__, TensorTwoViewAugment.forward

    def spy_lightly(self, image):
        lightly_calls.append(type(image).__name__)
        return real_lightly(self, image)

    def spy_engine(self, x):
        engine_calls.append(x.shape[0])
        return real_engine(self, x)

    monkeypatch.setattr(byol_transform.BYOLTransform, "__call__", spy_lightly)
    monkeypatch.setattr(TensorTwoViewAugment, "forward", spy_engine)
    args = argparse.Namespace(
        device="cpu", widths=[4], methods=["byol-ours", "byol-lightly"], augs=["shipped"],
        batch_sizes=[8], steps=1, warmup=1, repeats=1, n_images=32, bf16=False,
        channels_last=False, compile=False, data_root=str(data_root), loader_workers=0,
    )  # fmt: skip
    images, labels = throughput.load_images(data_root, 32)
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    lightly_runner = throughput.Runner("byol-lightly", 4, 8, "shipped", args, images, labels, acc)
    ours = throughput.Runner("byol-ours", 4, 8, "shipped", args, images, labels, acc)
    lightly_calls.clear()
    engine_calls.clear()
    v1, v2, y = lightly_runner.batch()
    assert lightly_calls == ["Image"] * 8 and not engine_calls  # per PIL image, lightly's own
    w1, w2, _ = ours.batch()
    assert engine_calls == [8] and len(lightly_calls) == 8  # one batched call of the engine's
    for a, b in ((v1, w1), (v2, w2)):
        assert a.shape == b.shape == (8, 3, 32, 32) and a.dtype == b.dtype == torch.float32
    # the same normalisation: both sets of views are roughly centred and unit-scaled
    assert (
        abs(float(torch.cat([v1, v2]).mean())) < 0.6
        and abs(float(torch.cat([w1, w2]).mean())) < 0.6
    )
    assert y.shape == (8,) and y.dtype == torch.int64
    res = throughput.run(args)
    assert {r["ratio"] for r in res["ratios"]} == {"byol-ours/byol-lightly"}
    assert (
        "1 interleaved rounds of 1 steps; lightly's `shipped` data path with 0 DataLoader workers"
        in throughput.markdown(res)
    )
