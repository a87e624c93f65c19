"""What keeping a run's state in memory for a stop signal costs, per epoch (issue 11).

After every epoch that the cadence does not checkpoint, the engine keeps a host copy of the run's
state (``_Runner._remember``). This times, on the state of a real run (the engine's runner for the
given profile and method after one training step, so the optimiser holds its momentum), paired
and alternating, ``--repeats`` times:

- ``fresh copies``: a new pageable host tensor per state tensor (``.to("cpu", copy=True)``, what the
  engine did before :mod:`vssl.train.snapshot`), the host blocked until the last one landed;
- ``snapshot, host``: :meth:`StateSnapshot.update` (reused buffers, pinned and ``non_blocking`` on
  CUDA): how long the host is held, which is what an epoch pays;
- ``snapshot, landed``: ``update`` then ``read`` (every copy completed).

Each is timed after the device is idle, so the table is the copy alone; in a run the copies queue
behind the epoch's last kernels. ``checkpoint contents`` is the state dict's assembly itself,
common to all three.

    python benchmarks/snapshot_cost.py --profile paper            # ~1 min on 2 CPU cores
    python benchmarks/snapshot_cost.py --profile paper --out s.json   # on a GPU: a few seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def fresh_copies(obj: Any) -> Any:
    """The engine's copy before vssl.train.snapshot: a new CPU tensor per tensor."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: fresh_copies(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(fresh_copies(v) for v in obj)
    return obj


def tensors(obj: Any) -> Iterator[Tensor]:
    """The tensors of a nested checkpoint dict."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


def main(argv: list[str] | None = None) -> int:
    from vssl.commands import pretrain as cmd
    from vssl.train.engine import _Runner
    from vssl.train.plan import plan_pretraining, process_state
    from vssl.train.snapshot import StateSnapshot

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--dataset", default="cifar10_mini")
    ap.add_argument("--method", default="vssl")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None, help="JSON results")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    with tempfile.TemporaryDirectory(prefix="vssl-snapshot-") as tmp:
        parser = argparse.ArgumentParser()
        cmd.add_arguments(parser)
        run = ["--params", args.params, "--profile", args.profile, "--dataset", args.dataset]
        run += ["--method", args.method, "--out", str(Path(tmp) / "run"), "--no-mlflow"]
        run += ["--seed", "0", "--no-progress", "--epochs", "2"]
        # one optimiser step on one batch's worth of images, uncompiled: the state is the same
        sets = ["pretrain.compile=false", *args.overrides]

        def job_with(extra: list[str]) -> Any:
            sets_argv = [a for s in [*sets, *extra] for a in ("--set", s)]
            return cmd.make_job(parser.parse_args([*run, *sets_argv]))

        bs = job_with([]).params.pretrain.batch_size
        runner = _Runner(plan_pretraining(job_with([f"data.train_subset={bs}"]), process_state()))
        if not runner.trainable:
            ap.error(f"{args.method} has no state to keep")
        runner.t_start = time.perf_counter()  # set by the run loop, read by _contents
        runner._train_epoch(0, None)
        device = runner.device
        sync: Callable[[], None] = (
            torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        )
        sync()

        def contents() -> Any:
            return runner._contents(1, False, None)

        snap = StateSnapshot()
        snap.update(contents())
        snap.read()  # allocate (and pin) the buffers once, as the engine's first epoch does

        def time_it(fn: Callable[[], Any]) -> float:
            sync()
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t

        state = contents()
        cases: dict[str, Callable[[], Any]] = {
            "checkpoint contents": contents,
            "fresh copies": lambda: fresh_copies(state),
            "snapshot, host": lambda: snap.update(state),
            "snapshot, landed": lambda: (snap.update(state), snap.read()),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeats):
            for name, fn in cases.items():
                times[name].append(time_it(fn))
                snap.read()
        mb = sum(t.numel() * t.element_size() for t in tensors(state)) / 1e6

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"{args.profile} profile, {args.method}, batch {bs}, {name}: state {mb:.0f} MB "
        f"in {sum(1 for _ in tensors(state))} tensors; {args.repeats} paired repeats, seconds"
    )
    print("| copy | min | median | max | GB/s (median) |")
    print("|---|---:|---:|---:|---:|")
    rows = {}
    for k, ts in times.items():
        med = statistics.median(ts)
        gbs = mb / 1e3 / med if k != "checkpoint contents" and med > 0 else None
        rows[k] = {"min": min(ts), "median": med, "max": max(ts), "gb_per_s": gbs}
        g = f"{gbs:.1f}" if gbs else "-"
        print(f"| {k} | {min(ts):.4f} | {med:.4f} | {max(ts):.4f} | {g} |")
    ratio = rows["fresh copies"]["median"] / max(rows["snapshot, host"]["median"], 1e-9)
    print(f"fresh copies / snapshot (host held): {ratio:.1f}x")
    if args.out:
        from vssl.io import write_text

        res = {
            "profile": args.profile,
            "method": args.method,
            "device": name,
            "torch": torch.__version__,
            "state_mb": mb,
            "repeats": args.repeats,
            "seconds": rows,
            "fresh_over_snapshot_host": ratio,
            "command": " ".join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        }
        write_text(Path(args.out), json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
