"""The training step never waits for the device: no value is read back to the host between the
engine's read points (every ``pretrain.log_every`` steps and the end of an epoch).

On CPU a dispatch mode counts the operations that synchronise on an accelerator (``.item()``,
``float()``/``int()``/``bool()`` of a tensor, ``nonzero``, boolean-mask indexing, ...) plus
``Tensor.tolist``/``numpy``; on CUDA ``torch.cuda.set_sync_debug_mode("error")`` makes any
synchronising call raise.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vssl.cli import main

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
aten = torch.ops.aten

# Operations whose CUDA implementation copies a value to the host and waits for it.
SYNCING = {
    aten._local_scalar_dense.default,  # .item(), float(t), int(t), bool(t)
    aten.is_nonzero.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten.allclose.default,
    aten.unique_consecutive.default,
    aten._unique2.default,
    aten.repeat_interleave.Tensor,
}


class SyncCounter(TorchDispatchMode):
    """Records syncing operations while ``active``."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.active:
            bool_index = func is aten.index.Tensor and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for i in args[1]
                if i is not None
            )
            if func in SYNCING or bool_index:
                import traceback

                where = "".join(traceback.format_stack(limit=8)[:-1])
                self.calls.append(f"{func}\n{where}")
        return func(*args, **(kwargs or {}))


def _args(out: Path, method: str, extra_sets=()) -> list[str]:
    a = ["pretrain", "--params", str(PARAMS), "--profile", "smoke", "--dataset", "cifar10_mini"]
    a += ["--method", method, "--seed", "0", "--out", str(out), "--epochs", "2"]
    sets = [
        "backbone.width=4",
        "data.train_subset=256",
        "data.test_subset=64",
        "pretrain.batch_size=32",  # 8 steps per epoch
        "pretrain.log_every=3",  # reads after steps 3 and 6, and at the epoch's end
        "pretrain.gpu_augment=true",
        *extra_sets,
    ]
    for s in sets:
        a += ["--set", s]
    return a


@contextmanager
def _watch_steps(monkeypatch, start, stop, first_epoch: int = 0):
    """Call ``start()`` when a training epoch (>= ``first_epoch``) begins and around the
    engine's read points ``stop()`` ... ``start()``; yields the list of read points seen."""
    from vssl.train import engine

    reads: list[str] = []
    real_epoch, real_read, real_row = (
        engine._Runner._train_epoch,
        engine._Runner._read_progress,
        engine._Runner._epoch_row,
    )

    def train_epoch(self, epoch, progress):
        if epoch >= first_epoch:
            start()
        try:
            return real_epoch(self, epoch, progress)
        finally:
            stop()

    def read_progress(self, *a, **k):
        stop()
        reads.append("log")
        try:
            return real_read(self, *a, **k)
        finally:
            start()

    def epoch_row(self, *a, **k):
        stop()
        reads.append("epoch end")
        return real_row(self, *a, **k)

    monkeypatch.setattr(engine._Runner, "_train_epoch", train_epoch)
    monkeypatch.setattr(engine._Runner, "_read_progress", read_progress)
    monkeypatch.setattr(engine._Runner, "_epoch_row", epoch_row)
    yield reads


@pytest.mark.parametrize("method", ["byol", "vssl", "control"])
def test_training_steps_read_nothing_back_between_log_points(
    smoke_params, mlflow_uri, tmp_path, monkeypatch, method
):
    """``control``: BYOL with the old per-step check (``raise_if_nonfinite``, an ``.item()``
    before the backward pass), which the counter must catch once per step."""
    if method == "control":
        from vssl.train.guards import NonFiniteWatch, raise_if_nonfinite

        def observe(self, loss, step):
            raise_if_nonfinite(loss, type("Acc", (), {"num_processes": 1})(), step, 1, None)

        monkeypatch.setattr(NonFiniteWatch, "observe", observe)
    counter = SyncCounter()
    host_reads: list[str] = []
    for name in ("tolist", "numpy", "__array__"):
        real = getattr(torch.Tensor, name)

        def wrapped(self, *a, _real=real, _name=name, **k):
            if counter.active:
                host_reads.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)

    def start():
        counter.active = True

    def stop():
        counter.active = False

    out = tmp_path / method
    with _watch_steps(monkeypatch, start, stop) as reads, counter:
        assert main(_args(out, "byol" if method == "control" else method)) == 0
    if method == "control":
        assert len(counter.calls) == 16 and all("_local_scalar_dense" in c for c in counter.calls)
        return
    assert counter.calls == [] and host_reads == [], (counter.calls[:3], host_reads)
    assert reads == ["log", "log", "epoch end"] * 2  # the reads did happen, only there
    m = json.loads((out / "metrics.json").read_text())
    assert m["global_step"] == 16 and m["loss"] is not None


def test_the_counter_sees_a_host_read():
    counter = SyncCounter()
    x = torch.ones(3)
    with counter:
        counter.active = True
        float(x.sum())
        bool((x > 0).all())
        x[x > 0]
    assert len(counter.calls) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["byol", "vssl"])
def test_cuda_steps_do_not_synchronise(cifar_mini_root, tmp_path, monkeypatch, method):
    """Steady state (epoch 2) under torch.cuda.set_sync_debug_mode("error"), compiled as
    ``pretrain.compile: auto`` does on CUDA. Needs neither MLflow nor Fashion-MNIST, so it runs on
    a bare GPU machine with only cifar10-mini carried."""

    def start():
        torch.cuda.set_sync_debug_mode("error")

    def stop():
        torch.cuda.set_sync_debug_mode("default")

    out = tmp_path / method
    try:
        with _watch_steps(monkeypatch, start, stop, first_epoch=1) as reads:
            assert main([*_args(out, method), "--no-mlflow"]) == 0
    finally:
        stop()
    assert reads == ["log", "log", "epoch end"] * 2
    assert json.loads((out / "metrics.json").read_text())["device"] == "cuda"


def _poison(monkeypatch, bad_calls: set[int]) -> list[int]:
    """BYOL whose loss is NaN at the given (1-based) training steps."""
    from vssl.methods.byol import BYOL

    real = BYOL.training_step
    calls: list[int] = []

    def poisoned(self, x1, x2):
        out = real(self, x1, x2)
        calls.append(1)
        if len(calls) in bad_calls:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(BYOL, "training_step", poisoned)
    return calls


def test_nonfinite_loss_stops_at_the_next_read(smoke_params, mlflow_uri, tmp_path, monkeypatch,
                                               capsys):  # fmt: skip
    """A NaN loss at step 2 is found at the read after step 3 (log_every=3): the run stops
    there, names step 2, and nothing was saved."""
    calls = _poison(monkeypatch, {2})
    out = tmp_path / "nan"
    assert main(_args(out, "byol", ["pretrain.checkpoint_every=1"])) == 3
    err = capsys.readouterr().err
    assert "non-finite loss at optimiser step 2 (epoch 1); found at the check after step 3" in err
    assert "no checkpoint was written yet" in err
    assert len(calls) == 3  # stopped at the first read after the bad step, not at the epoch end
    assert not any(out.glob("checkpoint*")) and not (out / "metrics.json").exists()


def test_nonfinite_weights_are_never_saved(smoke_params, mlflow_uri, tmp_path, monkeypatch,
                                           capsys):  # fmt: skip
    """A NaN loss in epoch 2 with no read before the epoch's end: the run stops at that end,
    before the epoch is evaluated or saved; the epoch-1 checkpoint stays, with finite weights."""
    calls = _poison(monkeypatch, {10})  # epoch 2, step 2 (8 steps per epoch)
    out = tmp_path / "nan"
    sets = ["pretrain.checkpoint_every=1", "pretrain.log_every=100"]
    assert main(_args(out, "byol", sets)) == 3
    err = capsys.readouterr().err
    assert "non-finite loss at optimiser step 10 (epoch 2)" in err
    assert "found at the check after step 16" in err
    assert len(calls) == 16
    ck = torch.load(out / "checkpoint.partial.pt", weights_only=True)
    assert ck["epoch"] == 1 and f"last good checkpoint is {out / 'checkpoint.partial.pt'}" in err
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
