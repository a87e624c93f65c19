"""What the engine does between training epochs, and what it costs at a cadence.

Runs ``vssl pretrain`` with the per-epoch events due often (online-probe test pass every epoch,
kNN monitor every 3rd, checkpoint every 2nd, the in-memory state kept for a signal on the others)
and reads, per epoch, the training loop and the monitors from the run's own history.csv
(``epoch_time_s``, ``monitor_time_s``), and times the checkpoints and the in-memory state by
wrapping the engine's methods. Each event's first occurrence is left out of its median (it pays
first-time costs: cuDNN autotuning of the evaluation's shapes, pinning host buffers), so 7
epochs (the default) give every event at least two warm samples. Then prints the share of
training time each event costs at the configured cadence (``pretrain.eval_every``,
``knn_every``, ``checkpoint_every`` of the profile, or the ones given).

    python benchmarks/epoch_costs.py --profile ablations --method byol
    python benchmarks/epoch_costs.py --profile quick --cadence eval_every=5,knn_every=10
    python benchmarks/epoch_costs.py --profile paper --tile 12   # at full CIFAR-10's size, on a GPU

``--tile N`` repeats cifar10-mini's 5,085 images N times in a temporary copy (12: 51,020
training and 10,000 held-out images, full CIFAR-10's counts and shape; the held-out ones repeat
training images, which changes what the monitors score but not what they cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EVENTS = {
    "_train_epoch": "training loop",
    "_evaluate:probe": "online-probe test pass",
    "_evaluate:knn": "online probe + kNN monitor",
    "_checkpoint": "checkpoint (checkpoint.partial.pt + history.csv)",
    "_remember": "state kept in memory for a signal (epochs without a checkpoint)",
}


def main(argv: list[str] | None = None) -> int:
    from vssl.cli import main as vssl_main
    from vssl.config import load_params
    from vssl.train import engine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--profile", default="ablations")
    p.add_argument("--dataset", default="cifar10_mini")
    p.add_argument("--method", default="byol")
    p.add_argument("--epochs", type=int, default=7, help="at least 7 for two warm samples each")
    p.add_argument("--set", action="append", default=[], help="params overrides")
    p.add_argument("--cadence", default="", help="e.g. eval_every=5,knn_every=10")
    p.add_argument("--tile", type=int, default=0, metavar="N",
                   help="cifar10_mini repeated N times (12: CIFAR-10's size; see above)")  # fmt: skip
    args = p.parse_args(argv)
    if args.tile and args.dataset != "cifar10_mini":
        p.error("--tile needs --dataset cifar10_mini")

    times: dict[str, list[float]] = defaultdict(list)

    def timed(name, fn):
        def wrapper(self, *a, **k):
            t0 = time.perf_counter()
            try:
                return fn(self, *a, **k)
            finally:
                times[name].append(time.perf_counter() - t0)

        return wrapper

    # The training loop and the monitors come from the run's own history.csv (epoch_time_s,
    # monitor_time_s); checkpoints and the in-memory state, which it only sums, are timed here.
    runner = engine._Runner
    patched = {name: timed(name, getattr(runner, name)) for name in ("_checkpoint", "_remember")}
    originals = {k: getattr(runner, k) for k in patched}
    every = ["pretrain.eval_every=1", "pretrain.knn_every=3", "pretrain.checkpoint_every=2"]
    root_before = os.environ.get("VSSL_DATA_ROOT")
    with tempfile.TemporaryDirectory() as tmp:
        if args.tile:
            every += tile_cifar10_mini(args, Path(tmp) / "data")
        cmd = ["pretrain", "--params", args.params, "--profile", args.profile]
        cmd += ["--dataset", args.dataset, "--method", args.method, "--seed", "0"]
        cmd += ["--out", str(Path(tmp) / "run"), "--epochs", str(args.epochs), "--no-mlflow"]
        for s in [*every, *args.set]:
            cmd += ["--set", s]
        try:
            for k, v in patched.items():
                setattr(runner, k, v)
            rc = vssl_main(cmd)
            if rc == 0:
                read_history(Path(tmp) / "run" / "history.csv", times)
        finally:
            for k, v in originals.items():
                setattr(runner, k, v)
            if root_before is None:
                os.environ.pop("VSSL_DATA_ROOT", None)
            else:
                os.environ["VSSL_DATA_ROOT"] = root_before
    if rc != 0:
        return rc

    params = load_params(args.params, profile=args.profile, overrides=args.set)
    pc = params.pretrain
    cadence = {
        "eval_every": pc.eval_every,
        "knn_every": pc.knn_every,
        "checkpoint_every": pc.checkpoint_every,
    }
    for item in filter(None, args.cadence.split(",")):
        key, _, value = item.partition("=")
        cadence[key] = int(value)
    warm = {k: v[1:] if len(v) > 1 else v for k, v in times.items()}  # see the docstring

    def median(key: str, default: float = 0.0) -> float:
        return statistics.median(warm[key]) if warm.get(key) else default

    train = median("_train_epoch")
    print(f"\n{args.profile} profile, {args.method}, {args.epochs} epochs; median seconds,")
    print("each event's first occurrence left out (first-time costs: the cold column):")
    print("| event | seconds | x training epoch | samples | cold (first) |")
    print("|---|---:|---:|---:|---:|")
    for key, label in EVENTS.items():
        if times.get(key):
            t = median(key)
            cold = f"{times[key][0]:.3f}" if len(times[key]) > 1 else "-"
            print(f"| {label} | {t:.3f} | {t / train:.3f} | {len(warm[key])} | {cold} |")
    probe = median("_evaluate:probe")
    knn = median("_evaluate:knn", probe)
    ckpt = median("_checkpoint")
    keep = median("_remember")
    e, k, c = cadence["eval_every"], cadence["knn_every"], cadence["checkpoint_every"]
    # per epoch: kNN epochs pay `knn` (which includes the probe pass); others the probe pass
    # every e epochs; checkpoints every c epochs, the in-memory state on the others.
    knn_share = (knn / k) if k > 0 else 0.0
    probe_share = probe * max(0.0, 1 / e - (1 / k if k > 0 else 0.0))
    ckpt_share = ckpt / c + keep * (1 - 1 / c)
    total = (knn_share + probe_share + ckpt_share) / train
    print(
        f"\ncadence {cadence}: per epoch, evaluation {100 * (knn_share + probe_share) / train:.1f}%"
        f", checkpoints {100 * ckpt_share / train:.1f}% -> {100 * total:.1f}% of training time"
    )
    return 0


def read_history(path: Path, times: dict[str, list[float]]) -> None:
    """Each epoch's training loop and monitors from a run's history.csv: the monitors count as
    kNN where the row has a kNN score, else as the online probe's test pass."""
    import csv

    with open(path) as f:
        for row in csv.DictReader(f):
            times["_train_epoch"].append(float(row["epoch_time_s"]))
            if row["monitor_time_s"] and (row["knn_top1"] or row["online_probe_top1"]):
                key = "_evaluate:knn" if row["knn_top1"] else "_evaluate:probe"
                times[key].append(float(row["monitor_time_s"]))


def tile_cifar10_mini(args: argparse.Namespace, data_root: Path) -> list[str]:
    """Write cifar10-mini's images repeated ``args.tile`` times under ``data_root`` and point
    the run there (VSSL_DATA_ROOT); returns the overrides that declare the copy."""
    import numpy as np

    from vssl.config import load_params

    params = load_params(args.params, profile=args.profile, overrides=args.set)
    entry = params.datasets["cifar10_mini"]
    with np.load(params.data_root_path() / entry.path) as f:
        arrays = {k: f[k] for k in f.files}
    for key in ("images", "labels"):
        arrays[key] = np.concatenate([arrays[key]] * args.tile)
    n = len(arrays["labels"])
    rel = f"cifar10-mini-x{args.tile}/train.npz"
    (data_root / rel).parent.mkdir(parents=True)
    np.savez(data_root / rel, **arrays)
    os.environ["VSSL_DATA_ROOT"] = str(data_root)
    test = min(10_000, n // 6)
    print(f"cifar10-mini x{args.tile}: {n - test} training and {test} held-out images")
    return [f"datasets.cifar10_mini.path={rel}", f"datasets.cifar10_mini.test_size={test}"]


if __name__ == "__main__":
    raise SystemExit(main())
