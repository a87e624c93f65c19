"""benchmarks/paper_width.py: the paper-settings check keeps the paper's schedule and reports it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def test_overrides_reach_the_command_and_head_the_report(bench, tmp_path: Path) -> None:
    sets = ["pretrain.epochs=200", "grid.seeds=[0, 1]"]
    cmd = bench.pretrain_cmd("vssl", tmp_path, seed=0, epochs=200, precision="no", sets=sets)
    i = cmd.index("pretrain.epochs=200")
    assert cmd[i - 1] == "--set" and cmd[cmd.index("grid.seeds=[0, 1]") - 1] == "--set"
    (tmp_path / "vssl").mkdir()
    _history([7.0, 3.0], [0.66, 0.8]).to_csv(tmp_path / "vssl" / "history.csv", index=False)
    (tmp_path / "overrides.txt").write_text("\n".join(sets) + "\n")
    bench.main(["report", str(tmp_path)])
    assert (
        "Overrides: `pretrain.epochs=200`, `grid.seeds=[0, 1]`."
        in (tmp_path / "summary.md").read_text()
    )


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


def _seed_folder(root: Path, seed: int, epochs: int, results: dict[str, tuple]) -> Path:
    """A `paper_width.py run --seed S` folder: probes, the features' meta.json, histories."""
    folder = root / f"seed{seed}"
    for config, (linear, knn, auroc) in results.items():
        (folder / "probes").mkdir(parents=True, exist_ok=True)
        probe = {"linear_top1": linear, "knn20_top1": knn}
        if auroc is not None:
            probe["uncertainty_error_auroc"] = auroc
        (folder / "probes" / f"{config}.json").write_text(json.dumps(probe))
        (folder / "features" / config).mkdir(parents=True)
        meta = {"seed": seed, "epoch": 0 if config == "random" else epochs}
        (folder / "features" / config / "meta.json").write_text(json.dumps(meta))
        if config != "random":
            (folder / config).mkdir()
            # the history runs past the extracted epoch: the row must read the extracted one
            kl = [5.0] * (epochs - 1) + [1.0] + [9.0] * 5
            history = {"epoch": range(1, len(kl) + 1), "kl": kl, "z_spread": [0.9] * len(kl)}
            pd.DataFrame(history).to_csv(folder / config / "history.csv", index=False)
    return folder


def test_seeds_averages_per_epoch_and_pairs_vssl_with_each_baseline(bench, tmp_path: Path) -> None:
    s0 = _seed_folder(
        tmp_path, 0, 4, {"vssl": (46.0, 40.0, 0.58), "byol": (45.0, 35.0, None),
                         "mocov3": (48.0, 41.0, None), "random": (33.0, 31.0, None)},
    )  # fmt: skip
    s1 = _seed_folder(
        tmp_path, 1, 4, {"vssl": (44.0, 36.0, 0.54), "byol": (40.0, 30.0, None),
                         "mocov3": (47.0, 39.0, None)},
    )  # fmt: skip
    s2 = _seed_folder(tmp_path, 2, 2, {"vssl": (30.0, 30.0, 0.50)})  # another epoch: apart
    out = tmp_path / "out"
    bench.main(["seeds", str(s0), str(s1), str(s2), "--out", str(out)])

    per_run = pd.read_csv(out / "seeds.csv")
    assert len(per_run) == 8
    assert list(per_run.config.drop_duplicates()) == ["vssl", "byol", "mocov3", "random"]
    vssl0 = per_run[(per_run.config == "vssl") & (per_run.seed == 0)].iloc[0]
    assert vssl0["epochs"] == 4 and vssl0["KL, last"] == 1.0  # the extracted epoch's KL
    text = (out / "seeds.md").read_text()
    cells = [
        [c.strip() for c in line.split("|")[1:-1]] for line in text.split("\n\n")[1].split("\n")
    ]
    summary = {(r[0], r[1]): dict(zip(cells[0], r, strict=True)) for r in cells[2:]}
    # vssl at 4 epochs: two seeds' mean ± sample std, never averaged with the 2-epoch run
    assert summary["vssl", "4"]["seeds"] == "0, 1"
    assert summary["vssl", "4"]["linear top-1"] == "45 ± 1.4"
    assert summary["vssl", "4"]["error AUROC"] == "0.56 ± 0.028"
    assert summary["vssl", "2"]["linear top-1"] == "30"
    assert summary["random", "0"]["KL, last"] == "-"
    # paired differences: seed 0 +1 / +5, seed 1 +4 / +6 against BYOL; -2 / -1, -3 / -3
    # against MoCo v3
    byol, moco = text.split("VSSL minus BYOL, paired")[1].split("VSSL minus MoCo v3, paired")
    assert "- 4 epochs: linear top-1 2.5 ± 2.1, kNN-20 top-1 5.5 ± 0.71" in byol
    assert "- 4 epochs: linear top-1 -2.5 ± 0.71, kNN-20 top-1 -2 ± 1.4" in moco
    assert "- 2 epochs" not in text  # no BYOL run at 2 epochs to pair with


def test_seeds_refuses_duplicates_and_empty_folders(bench, tmp_path: Path) -> None:
    a = _seed_folder(tmp_path / "a", 0, 4, {"vssl": (46.0, 40.0, 0.58)})
    b = _seed_folder(tmp_path / "b", 0, 4, {"vssl": (47.0, 41.0, 0.59)})
    with pytest.raises(SystemExit, match="same config, seed and epoch"):
        bench.main(["seeds", str(a), str(b), "--out", str(tmp_path / "out")])
    c = _seed_folder(tmp_path / "c", 1, 4, {"vssl": (47.0, 41.0, 0.59)})
    (c / "overrides.txt").write_text("pretrain.epochs=200\n")  # another schedule: not averaged
    with pytest.raises(SystemExit, match="different --set overrides"):
        bench.main(["seeds", str(a), str(c), "--out", str(tmp_path / "out")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no probes"):
        bench.main(["seeds", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])


@pytest.mark.slow
def test_a_stopped_run_stops_its_pretraining_and_resumes(data_root, tmp_path: Path) -> None:
    """SIGTERM to `paper_width.py run` (what `timeout` sends) reaches the pretraining process
    it started: that run saves its last completed epoch and exits, so nothing keeps running and
    a second `run` resumes from the checkpoint instead of starting over."""
    out = tmp_path / "pw"
    cmd = [
        sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "paper_width.py"),
        "run", "--out", str(out), "--epochs", "200", "--configs", "vssl", "--precision", "no",
        "--set", "pretrain.epochs=200", "--set", "backbone.width=4",
        "--set", "data.train_subset=64", "--set", "data.test_subset=32",
        "--set", "pretrain.batch_size=32", "--set", "pretrain.knn_every=0",
        "--set", "probe.knn.k=[20]", "--set", "pretrain.checkpoint_every=100", "--set", "methods.vssl.proj_hidden_dim=64",
        "--set", "methods.vssl.latent_dim=32", "--set", "methods.vssl.pred_hidden_dim=64",
    ]  # fmt: skip
    env = dict(os.environ, VSSL_DATA_ROOT=str(data_root), OMP_NUM_THREADS="1")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    history = out / "vssl" / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and (
        not history.exists() or len(history.read_text().splitlines()) < 3
    ):
        assert p.poll() is None, p.stdout.read().decode()[-2000:]
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    stdout = p.communicate(timeout=120)[0].decode()
    assert p.returncode != 0 and "pretraining failed for vssl" in stdout
    log = (out / "vssl.log").read_text()
    assert "SIGTERM" in log  # the pretraining process got the signal and stopped itself
    saved = pd.read_csv(history)["epoch"].max()
    assert 2 <= saved < 200 and (out / "vssl" / "checkpoint.partial.pt").exists()
    resumed = subprocess.run(
        [*cmd[:5], "--epochs", str(saved + 1), *cmd[7:]], env=env, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert pd.read_csv(history)["epoch"].tolist() == list(range(1, saved + 2))
    assert json.loads((out / "probes" / "vssl.json").read_text())["linear_top1"] >= 0
