"""Where a training step's time goes: the engine's own epoch (the code `vssl pretrain` runs)
under ``torch.profiler``, with the step's phases labelled.

The runner is built exactly as ``vssl pretrain`` builds it (params.yaml, profile, ``--set``
overrides; compile, channels-last, mixed precision and batched augmentation as configured),
trains ``--warmup-epochs`` epochs (compilation, cuDNN autotuning), then profiles the next
``--epochs`` epochs. Printed per optimiser step: wall time, the time the device spent in
kernels (the union of their intervals, so overlap is not counted twice) and so how busy it
was, kernel launches, and the host and device time of each phase:

    augment      the next batch of two views (``TrainBatches.epoch``)
    forward      the compiled or eager training module's forward (the rest of the step)
    backward     ``Accelerator.backward``
    clip         ``Accelerator.clip_grad_norm_`` (methods with ``grad_clip_norm``)
    optimiser    both optimisers' ``step`` and ``zero_grad``
    check        the non-finite watch (queued on the device)
    ema          ``Method.momentum_update`` (the teacher)
    spread       ``embedding_spread`` (the collapse monitor)
    other        the rest of the loop: the on-device loss sums, the scheduler, Python

then the operators with the most device time and the most host time. ``--trace`` writes a
Chrome trace (gzipped) for chrome://tracing or Perfetto.

    python benchmarks/profile_step.py --profile paper --dataset cifar10_mini --method vssl \\
        --out /tmp/profile-vssl.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAUNCHES = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx"}
PHASES = ("augment", "forward", "backward", "clip", "optimiser", "check", "ema", "spread", "other")


def labelled(fn: Callable, name: str) -> Callable:
    """``fn`` inside a profiler range called ``name``."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        with record_function(f"phase:{name}"):
            return fn(*a, **k)

    return wrapper


def labelled_batches(epoch_fn: Callable) -> Callable:
    """``TrainBatches.epoch`` whose every ``next()`` is the ``augment`` phase."""

    @functools.wraps(epoch_fn)
    def epoch(e: int) -> Iterator:
        it = iter(epoch_fn(e))
        while True:
            with record_function("phase:augment"):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item

    return epoch


def label_phases(runner: Any) -> Callable[[], None]:
    """Wrap the runner's parts (its instance attributes and two of the engine's module
    functions) in profiler ranges; the engine's code itself is unchanged. Returns the undo for
    the module functions (the runner is thrown away after profiling)."""
    from vssl.train import engine, monitor

    acc = runner.acc
    acc.backward = labelled(acc.backward, "backward")
    acc.clip_grad_norm_ = labelled(acc.clip_grad_norm_, "clip")
    for opt in (runner.optimizer, runner.probe_opt):
        opt.step = labelled(opt.step, "optimiser")
        opt.zero_grad = labelled(opt.zero_grad, "optimiser")
    runner.method.momentum_update = labelled(runner.method.momentum_update, "ema")
    runner.nonfinite.observe = labelled(runner.nonfinite.observe, "check")
    runner.batches.epoch = labelled_batches(runner.batches.epoch)
    real_spread, real_step = monitor.embedding_spread, engine.train_step
    monitor.embedding_spread = labelled(real_spread, "spread")
    engine.train_step = labelled(real_step, "step")

    def undo() -> None:
        monitor.embedding_spread, engine.train_step = real_spread, real_step

    return undo


def device_work(event: Any) -> bool:
    """A kernel, copy or fill on the device, not a range drawn on the device's timeline: the
    phase labels (``record_function``) and the optimisers' own ``Optimizer.step#...`` ranges
    appear there as user annotations that span many kernels and the gaps between them
    (counting them made the H100 profiles of 2026-11-27 read 27.6 ms of kernels per step
    where the kernels themselves took 11.5)."""
    if event.device_type.name != "CUDA" or getattr(event, "is_user_annotation", False):
        return False
    return not event.name.startswith(("phase:", "Optimizer."))


def busy_union(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``[start, end)`` intervals."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def summarise(prof: Any, steps: int, wall_s: float, device: str) -> dict[str, Any]:
    """Per-step phase times, device busy fraction and the top operators, from ``prof``."""
    events = prof.events()
    use_device = device == "cuda"

    phases: dict[str, dict[str, float]] = {}
    for e in events:
        if e.name.startswith("phase:"):
            p = phases.setdefault(e.name[6:], {"host_ms": 0.0, "device_ms": 0.0, "calls": 0})
            p["host_ms"] += e.cpu_time_total / 1e3
            p["device_ms"] += e.device_time_total / 1e3  # kernels launched inside e
            p["calls"] += 1
    zero = {"host_ms": 0.0, "device_ms": 0.0, "calls": 0}
    step = phases.get("step", zero)
    inner = ("backward", "clip", "optimiser", "check")  # inside train_step
    phases["forward"] = {
        k: step[k] - sum(phases.get(p, zero)[k] for p in inner) for k in ("host_ms", "device_ms")
    }
    outer = ("augment", "step", "ema", "spread")  # the loop's top level
    phases["other"] = {
        "host_ms": 1e3 * wall_s - sum(phases.get(p, zero)["host_ms"] for p in outer),
        "device_ms": 0.0,
    }
    kernels: list[tuple[float, float]] = []
    launches = 0
    for e in events:
        if use_device and device_work(e):
            kernels.append((e.time_range.start, e.time_range.end))
        if e.name in LAUNCHES:
            launches += 1
    kernel_ms = busy_union(kernels) / 1e3
    per_step = {
        p: {k: round(v / steps, 3) for k, v in phases[p].items() if k != "calls"}
        for p in (*PHASES, "step")
        if p in phases
    }
    sort_dev = "self_device_time_total" if use_device else "self_cpu_time_total"
    top_dev = prof.key_averages().table(sort_by=sort_dev, row_limit=20)
    top_host = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    return {
        "steps": steps,
        "wall_ms_per_step": 1e3 * wall_s / steps,
        "kernel_ms_per_step": kernel_ms / steps if use_device else None,
        "device_busy": (kernel_ms / 1e3) / wall_s if use_device and wall_s > 0 else None,
        "launches_per_step": launches / steps if use_device else None,
        "phases_per_step_ms": per_step,
        "top_device_ops": top_dev,
        "top_host_ops": top_host,
    }


def build_runner(args: argparse.Namespace, out_dir: Path) -> Any:
    """The engine's runner for the job `vssl pretrain` would run with these arguments (its own
    argument parser and :func:`vssl.commands.pretrain.make_job`)."""
    from vssl.commands import pretrain as cmd
    from vssl.train.engine import _Runner
    from vssl.train.plan import plan_pretraining, process_state

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    argv = ["--params", args.params, "--dataset", args.dataset, "--method", args.method]
    argv += ["--seed", str(args.seed), "--out", str(out_dir), "--overwrite", "--no-mlflow"]
    argv += ["--epochs", str(args.warmup_epochs + args.epochs), "--no-progress"]
    if args.profile:
        argv += ["--profile", args.profile]
    for s in args.overrides:
        argv += ["--set", s]
    job = cmd.make_job(parser.parse_args(argv))
    return _Runner(plan_pretraining(job, process_state()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--dataset", default="cifar10_mini")
    ap.add_argument("--method", default="vssl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup-epochs", type=int, default=1, help="trained, not profiled")
    ap.add_argument("--epochs", type=int, default=1, help="profiled epochs (events cost time)")
    ap.add_argument("--out", default=None, help="JSON summary (the tables beside it as .txt)")
    ap.add_argument("--trace", default=None, help="Chrome trace, gzipped (.json.gz)")
    args = ap.parse_args(argv)
    if args.warmup_epochs < 1 or args.epochs < 1:
        ap.error("--warmup-epochs and --epochs must be at least 1")

    tmp = Path(tempfile.mkdtemp(prefix="vssl-profile-"))
    undo: Callable[[], None] = lambda: None  # noqa: E731
    try:
        runner = build_runner(args, tmp / "run")
        device = runner.device.type
        if not runner.trainable:
            ap.error(f"{args.method} does not train")
        undo = label_phases(runner)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        for e in range(args.warmup_epochs):
            runner._train_epoch(e, None)
        sync()
        warm_s = time.perf_counter() - t0
        print(f"warm-up: {args.warmup_epochs} epoch(s) in {warm_s:.1f} s; profiling", flush=True)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for e in range(args.warmup_epochs, args.warmup_epochs + args.epochs):
                runner._train_epoch(e, None)
            sync()
            wall_s = time.perf_counter() - t0
        steps = runner.plan.steps_per_epoch * args.epochs
        res = summarise(prof, steps, wall_s, device)
        pc = runner.params.pretrain
        res.update(
            method=args.method,
            profile=args.profile,
            dataset=args.dataset,
            device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
            torch=torch.__version__,
            batch_size=pc.batch_size,
            width=runner.params.backbone.width,
            compiled=runner.compiled,
            compile_mode=runner._compile_label(),
            channels_last=runner.channels_last,
            mixed_precision=runner.plan.mixed_precision,
            warmup_s=warm_s,
            images_per_second=pc.batch_size * steps / wall_s,
            command=" ".join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        )
        if args.trace:
            raw = tmp / "trace.json"
            Path(args.trace).parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(raw))
            with open(raw, "rb") as f, gzip.open(args.trace, "wb") as g:
                shutil.copyfileobj(f, g)
    finally:
        undo()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"{res['method']} on {res['device']} ({res['torch']}), batch {res['batch_size']}, width "
        f"{res['width']}, compiled {res['compile_mode']}, channels-last {res['channels_last']}, "
        f"{res['mixed_precision']}: {res['images_per_second']:.0f} img/s under the profiler, "
        f"{res['wall_ms_per_step']:.2f} ms per step"
        + (
            f", kernels {res['kernel_ms_per_step']:.2f} ms per step (device busy "
            f"{100 * res['device_busy']:.0f} %), {res['launches_per_step']:.0f} launches per step"
            if res["device_busy"] is not None
            else ""
        )
    )
    print("| phase | host ms / step | device ms / step |\n|---|---:|---:|")
    for p, v in res["phases_per_step_ms"].items():
        print(f"| {p} | {v['host_ms']:.3f} | {v['device_ms']:.3f} |")
    print(res["top_device_ops"])
    print(res["top_host_ops"])
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tables = {k: res.pop(k) for k in ("top_device_ops", "top_host_ops")}
        tmp_out = out.with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(res, indent=1))
        tmp_out.replace(out)
        out.with_suffix(".txt").write_text("\n\n".join(tables.values()))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
