"""The engine (`vssl pretrain`) before and after a change, on the same machine, interleaved.

Runs ``vssl pretrain`` from two source trees: ``--old`` (a copy of an earlier commit, e.g.
``git archive <commit> vssl params.yaml | tar -x -C /tmp/vssl_old``) and this checkout, each
variant once per round, round after round, so machine noise (a shared CPU) hits all of them
alike. Each run trains ``--epochs`` epochs of cifar10-mini with the given profile and settings;
its history.csv gives training images/s per epoch (the training loop only: no evaluation,
checkpoint or tracking). Reported per variant: epoch 1 (warm-up) and the later epochs (steady
state), medians over rounds, and the ratio to ``old`` within each round.

    python benchmarks/engine_ab.py --old /tmp/vssl_old --rounds 3 --methods byol vssl \
        --variants old new new:pretrain.channels_last=true --out results/engine-ab.json

A variant is ``old``, ``new`` or ``new:KEY=VALUE[,KEY=VALUE]`` (extra ``--set`` overrides for
this checkout). The old tree's editable-install finder is bypassed, so ``vssl`` is imported
from ``--old``. Both trees track with MLflow into a temporary SQLite store unless the new one
has ``--no-mlflow`` (tracking happens outside the timed training loop either way).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs `vssl pretrain` from the tree given as argv[1], whatever `vssl` is installed as.
LAUNCH = (
    "import sys; tree = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'editable' not in getattr(f, '__module__', '')]; "
    "sys.path.insert(0, tree); import vssl; assert vssl.__file__.startswith(tree), vssl.__file__; "
    "from vssl.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_once(tree: Path, method: str, sets: list[str], args: argparse.Namespace, work: Path):
    out = work / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-c", LAUNCH, str(tree), "pretrain"]
    cmd += ["--params", str(tree / "params.yaml"), "--profile", args.profile]
    cmd += ["--dataset", "cifar10_mini", "--method", method, "--seed", "0", "--out", str(out)]
    cmd += ["--epochs", str(args.epochs)]
    for s in [*args.set, *sets]:
        cmd += ["--set", s]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    ips = [float(r["images_per_second"]) for r in rows]
    times = [float(r["epoch_time_s"]) for r in rows]
    steady = sum(i * t for i, t in zip(ips[1:], times[1:], strict=True)) / sum(times[1:])
    return {"first": ips[0], "steady": steady, "epochs": ips, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, type=Path, help="the earlier source tree")
    p.add_argument("--new", default=ROOT, type=Path, help="this checkout (default)")
    p.add_argument("--profile", default="ablations", help="params profile (default: width 16, "
                   "batch 256, no DataLoader workers)")  # fmt: skip
    p.add_argument("--methods", nargs="+", default=["byol", "vssl"])
    p.add_argument("--variants", nargs="+", default=["old", "new"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--set", action="append", default=["pretrain.knn_every=0"],
                   help="overrides for both trees (default: pretrain.knn_every=0)")  # fmt: skip
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (epoch 1 is the warm-up)")
    results: dict[str, dict[int, dict]] = {}  # "method variant" -> round -> result
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            for method in args.methods:
                for variant in args.variants:
                    name, _, extra = variant.partition(":")
                    tree = args.old if name == "old" else args.new
                    sets = [s for s in extra.split(",") if s]
                    try:
                        res = run_once(tree.resolve(), method, sets, args, work)
                    except subprocess.CalledProcessError as e:  # e.g. killed from outside
                        print(f"round {r} {method} {variant}: failed ({e.returncode}), left out")
                        continue
                    results.setdefault(f"{method} {variant}", {})[r] = res
                    print(
                        f"round {r} {method:>5} {variant:<34} epoch 1 {res['first']:7.1f} img/s, "
                        f"steady {res['steady']:7.1f} img/s, wall {res['wall_s']:6.1f} s",
                        flush=True,
                    )
    rows = []
    for method in args.methods:
        base = results.get(f"{method} {args.variants[0]}", {})
        for variant in args.variants:
            by_round = results.get(f"{method} {variant}", {})
            ratio = [by_round[r]["steady"] / base[r]["steady"] for r in by_round if r in base]
            rs = list(by_round.values())
            if not rs or not ratio:
                continue
            rows.append(
                {
                    "method": method,
                    "variant": variant,
                    "epoch1_median": statistics.median(x["first"] for x in rs),
                    "steady_median": statistics.median(x["steady"] for x in rs),
                    "steady_min": min(x["steady"] for x in rs),
                    "steady_max": max(x["steady"] for x in rs),
                    "ratio_median": statistics.median(ratio),
                    "ratio_min": min(ratio),
                    "ratio_max": max(ratio),
                }
            )
    lines = [
        f"| method | variant | epoch 1 img/s | steady img/s (median, min-max) | "
        f"steady / {args.variants[0]} (median, min-max) |",
        "|---|---|---:|---:|---:|",
    ]
    for x in rows:
        lines.append(
            f"| {x['method']} | {x['variant']} | {x['epoch1_median']:.1f} | "
            f"{x['steady_median']:.1f} ({x['steady_min']:.1f}-{x['steady_max']:.1f}) | "
            f"{x['ratio_median']:.3f} ({x['ratio_min']:.3f}-{x['ratio_max']:.3f}) |"
        )
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps({"command": " ".join(sys.argv), "rows": rows, "runs": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
