"""benchmarks/profile_step.py (the engine's step under torch.profiler) and benchmarks/gpu_busy.py
(nvidia-smi samples of an engine run's steady epochs)."""

from __future__ import annotations

import json
from datetime import time
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

busy = load_benchmark("gpu_busy.py", "gpu_busy_bench")

LOG = """\
02:28:16 INFO vssl.train: something else
02:28:17 INFO vssl.train: epoch 1/3 loss 11.62 images_per_second 70.18 epoch_time_s 54.72
02:28:18 INFO vssl.train: epoch 2/3 loss 5.918 images_per_second 7239 epoch_time_s 0.5305
02:28:20 INFO vssl.train: epoch 3/3 loss 4.756 images_per_second 6978 epoch_time_s 0.5503
vssl pretrain: cifar10_mini/vssl/seed0: ...
"""


def _samples(rows: list[tuple[str, int]]) -> str:
    return "\n".join(f"2026/11/27 {t}, {v}" for t, v in rows) + "\n[N/A]\n"


def test_busy_counts_only_the_epochs_after_the_first(tmp_path: Path):
    """Compilation (before epoch 1's line) idles the GPU: those samples must not count; the
    window ends a second after the last epoch's line (the log has one-second stamps)."""
    log = tmp_path / "run.log"
    log.write_text(LOG)
    rows = [(f"02:28:{s:02d}.{ms:03d}", 0) for s in range(0, 17) for ms in (0, 500)]
    rows += [("02:28:17.200", 90), ("02:28:18.700", 96), ("02:28:20.900", 92), ("02:28:21.100", 3)]
    samples = tmp_path / "busy.csv"
    samples.write_text(_samples(rows))
    window = busy.steady_window(log)
    assert window == (time(2, 28, 17), time(2, 28, 21))
    assert sorted(busy.steady_busy(busy.read_samples(samples), window)) == [90, 92, 96]
    assert busy.main([str(samples), str(log), "--label", "engine vssl"]) == 0


def test_busy_inside_the_training_loops_from_millisecond_stamps(tmp_path: Path, capsys):
    """Each epoch line comes after its loop and monitors: the loop is [t - monitor - epoch
    time, t - monitor). A sample counts only if its whole 200 ms period lies in a loop, so
    the monitors' and compilation's samples do not."""
    log = tmp_path / "run.log"
    log.write_text(
        "02:28:17.500 INFO vssl.train: epoch 1/3 loss 11.6 epoch_time_s 54.7 "
        "monitor_time_s 1.0e-05\n"
        "02:28:20.000 INFO vssl.train: epoch 2/3 loss 5.9 images_per_second 7239 "
        "epoch_time_s 2.0 online_probe_top1 30.1 monitor_time_s 0.5\n"
        "02:28:22.100 INFO vssl.train: epoch 3/3 loss 4.7 epoch_time_s 1.5 monitor_time_s 0.1\n"
    )
    windows = busy.loop_windows(log)
    assert windows == [
        (time(2, 28, 17, 500000), time(2, 28, 19, 500000)),
        (time(2, 28, 20, 500000), time(2, 28, 22)),
    ]
    assert busy.steady_window(log) == (time(2, 28, 17, 500000), time(2, 28, 22, 100000))
    rows = [("02:28:10.000", 0), ("02:28:17.600", 10), ("02:28:17.800", 95), ("02:28:19.400", 97)]
    rows += [("02:28:19.600", 40), ("02:28:20.600", 30), ("02:28:21.000", 93)]
    rows += [("02:28:21.900", 99), ("02:28:22.050", 50)]
    samples = tmp_path / "busy.csv"
    samples.write_text(_samples(rows))
    got = busy.loop_busy(busy.read_samples(samples), windows)
    assert got == [95, 97, 93, 99]
    assert busy.main([str(samples), str(log)]) == 0
    assert (
        "inside the training loops of 2 epochs (4 samples): median 96 %" in capsys.readouterr().out
    )
    assert busy.loop_windows(tmp_path / "run.log") and not busy.loop_windows(_coarse(tmp_path))


def _coarse(tmp_path: Path) -> Path:
    log = tmp_path / "coarse.log"
    log.write_text(LOG)
    return log


def test_busy_refuses_a_run_without_steady_epochs(tmp_path: Path, capsys):
    log = tmp_path / "run.log"
    log.write_text(LOG.splitlines()[1] + "\n")  # epoch 1 only: stopped while compiling
    samples = tmp_path / "busy.csv"
    samples.write_text(_samples([("02:28:17.200", 90)]))
    assert busy.main([str(samples), str(log)]) == 1
    assert "fewer than 2 epochs" in capsys.readouterr().err


@pytest.mark.slow
def test_profile_step_labels_the_engines_phases(cifar_mini_root, tmp_path: Path, capsys):
    """The engine's own epoch under the profiler (CPU, tiny): every phase of the step is found
    and the labelled phases account for most of the wall time."""
    from vssl.train import engine, monitor

    prof = load_benchmark("profile_step.py", "profile_step_bench")
    real = (engine.train_step, monitor.embedding_spread)
    out = tmp_path / "vssl.json"
    sets = ["backbone.width=4", "data.train_subset=128", "pretrain.batch_size=32"]
    argv = ["--profile", "smoke", "--method", "vssl", "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    assert prof.main(argv) == 0
    res = json.loads(out.read_text())
    ph = res["phases_per_step_ms"]
    assert set(ph) == {*prof.PHASES, "step"}
    assert res["steps"] == 4 and res["compiled"] is False and res["device_busy"] is None
    for name in ("augment", "forward", "backward", "clip", "optimiser", "ema", "spread"):
        assert ph[name]["host_ms"] > 0, name
    # "forward" and "other" are remainders: the labelled ranges neither overlap nor exceed
    # what holds them, and they cover most of the loop
    assert ph["step"]["host_ms"] > ph["backward"]["host_ms"] + ph["optimiser"]["host_ms"]
    assert 0 <= ph["other"]["host_ms"] < 0.5 * res["wall_ms_per_step"]
    assert "convolution" in out.with_suffix(".txt").read_text()
    assert "| backward |" in capsys.readouterr().out
    assert (engine.train_step, monitor.embedding_spread) == real  # the labels are undone


def test_device_busy_counts_kernels_not_annotations():
    """Ranges drawn on the device's timeline (the phase labels, Optimizer.step#...) are not
    device work; kernels and copies are; host events are not."""
    from types import SimpleNamespace as E

    prof = load_benchmark("profile_step.py", "profile_step_bench")
    cuda, cpu = E(name="CUDA"), E(name="CPU")
    assert prof.device_work(E(name="triton_poi_fused_0", device_type=cuda))
    assert prof.device_work(E(name="Memcpy HtoD", device_type=cuda, is_user_annotation=False))
    assert not prof.device_work(E(name="phase:step", device_type=cuda, is_user_annotation=True))
    assert not prof.device_work(E(name="phase:augment", device_type=cuda))
    assert not prof.device_work(E(name="Optimizer.step#LARS.step", device_type=cuda))
    assert not prof.device_work(E(name="aten::mm", device_type=cpu))


def test_busy_union_counts_overlap_once():
    prof = load_benchmark("profile_step.py", "profile_step_bench")
    assert prof.busy_union([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert prof.busy_union([]) == 0.0


def test_compile_gain_times_each_variants_module(capsys):
    """benchmarks/compile_gain.py, eager only (compiling takes a minute per variant on a CPU):
    one row per variant with a positive time."""
    gain = load_benchmark("compile_gain.py", "compile_gain_bench")
    argv = ["--width", "4", "--batch-size", "8", "--steps", "1", "--modes", "eager"]
    assert gain.main([*argv, "--variants", "byol", "vssl-nokl"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| byol") or
            r.startswith("| vssl")]  # fmt: skip
    assert [r.split(" | ")[0] for r in rows] == ["| byol", "| vssl-nokl"]
    assert all(float(r.split(" | ")[1]) > 0 for r in rows)


def test_epoch_costs_times_each_event_and_projects_a_cadence(cifar_mini_root, capsys):
    """benchmarks/epoch_costs.py (tiny, CPU, on cifar10-mini tiled twice): every per-epoch
    event is timed at least twice after its first (cold) occurrence, the projection at the given
    cadence adds up, and the engine's methods and the data root are restored afterwards."""
    import os
    import re

    from vssl.train import engine

    costs = load_benchmark("epoch_costs.py", "epoch_costs_bench")
    names = ("_train_epoch", "_evaluate", "_checkpoint", "_remember")
    real = [getattr(engine._Runner, n) for n in names]
    argv = ["--profile", "smoke", "--method", "byol", "--epochs", "7"]
    for s in ["backbone.width=4", "data.train_subset=128", "pretrain.batch_size=32"]:
        argv += ["--set", s]
    argv += ["--tile", "2", "--cadence", "eval_every=1,knn_every=10,checkpoint_every=10"]
    assert costs.main(argv) == 0
    out = capsys.readouterr().out
    assert "cifar10-mini x2: 8475 training and 1695 held-out images" in out
    assert os.environ["VSSL_DATA_ROOT"] == str(cifar_mini_root)
    rows = {r.split(" | ")[0][2:]: r for r in out.splitlines() if r.startswith("| ")}
    for label in ("training loop", "online-probe test pass", "online probe + kNN monitor"):
        assert float(rows[label].split(" | ")[1]) > 0, label
    # epochs 1-7: probe pass 1 2 4 5, kNN 3 6 7, checkpoint 2 4 6, in memory 1 3 5
    warm = {label: int(r.split(" | ")[3]) for label, r in rows.items() if label != "event"}
    assert warm == {
        "training loop": 6,
        "online-probe test pass": 3,
        "online probe + kNN monitor": 2,
        "checkpoint (checkpoint.partial.pt + history.csv)": 2,
        "state kept in memory for a signal (epochs without a checkpoint)": 2,
    }, out
    m = re.search(r"evaluation ([\d.]+)%, checkpoints ([\d.]+)% -> ([\d.]+)%", out)
    assert m, out
    ev, ck, total = map(float, m.groups())
    assert ev > 0 and total == pytest.approx(ev + ck, abs=0.11)
    assert [getattr(engine._Runner, n) for n in names] == real


def test_snapshot_cost_times_both_copies_on_a_runs_real_state(cifar_mini_root, tmp_path, capsys):
    """benchmarks/snapshot_cost.py (tiny, CPU): the state of a run after one step (the
    optimiser's momentum included), every copy timed, the JSON written."""
    cost = load_benchmark("snapshot_cost.py", "snapshot_cost_bench")
    argv = ["--profile", "smoke", "--repeats", "2", "--out", str(tmp_path / "s.json")]
    for s in ["backbone.width=4", "data.test_subset=32"]:
        argv += ["--set", s]
    assert cost.main(argv) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["state_mb"] > 0 and res["device"] == "cpu" and res["repeats"] == 2
    assert set(res["seconds"]) == {
        "checkpoint contents", "fresh copies", "snapshot, host", "snapshot, landed"
    }  # fmt: skip
    assert all(r["median"] > 0 and r["min"] <= r["median"] <= r["max"]
               for r in res["seconds"].values())  # fmt: skip
    assert "fresh copies / snapshot (host held)" in capsys.readouterr().out
