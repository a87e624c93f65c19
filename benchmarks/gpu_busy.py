"""GPU busy % of an engine run's steady state, from ``nvidia-smi`` samples and the run's log.

``nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 200``
samples the whole run: start-up, the first epoch (compilation) and the rest. Only the samples
between the log line of epoch 1 and the line of the last epoch count (the steady epochs, their
evaluation included): a whole-run figure mostly measures compilation, when the GPU idles.

    python benchmarks/gpu_busy.py SAMPLES.csv PRETRAIN.log [--label byol]

It prints two figures. The steady window's (every sample from epoch 1's line to the last
epoch's) counts the work between epochs (monitors, checkpoints) as well. The training loops'
counts only samples that fall, with the 200 ms before them (nvidia-smi's utilisation is the
share of its last sample period in which a kernel ran), inside an epoch's training loop: each
epoch line is written after the loop and the monitors, and carries ``epoch_time_s`` and
``monitor_time_s``, so the loop is ``[t - monitor - epoch_time, t - monitor]``. That needs the
log's millisecond stamps (``vssl pretrain`` writes them) and epochs longer than the sample
period: on cifar10-mini a GPU epoch lasts 0.14-0.18 s, so only longer epochs (``--tile`` in
``benchmarks/epoch_costs.py``) give the loop figure.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from datetime import datetime, time, timedelta
from pathlib import Path

EPOCH_LINE = re.compile(r"^(\d\d:\d\d:\d\d(?:\.\d{3})?) INFO vssl\.train: epoch (\d+)/(\d+) ")
FIELD = re.compile(r" (epoch_time_s|monitor_time_s) ([-+.\w]+)")
SAMPLE_PERIOD = timedelta(milliseconds=200)


def _clock(stamp: str) -> time:
    return datetime.strptime(stamp, "%H:%M:%S.%f" if "." in stamp else "%H:%M:%S").time()


def read_samples(path: Path) -> list[tuple[time, float]]:
    """``(time of day, utilisation %)`` per line ``YYYY/MM/DD HH:MM:SS.mmm, NN``; other lines
    (a header, ``[N/A]``) are skipped."""
    rows = []
    for line in path.read_text().splitlines():
        stamp, _, value = line.rpartition(",")
        try:
            t = datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").time()
            rows.append((t, float(value)))
        except ValueError:
            continue
    return rows


def steady_window(log: Path) -> tuple[time, time] | None:
    """From the end of epoch 1 to the end of the last epoch logged (one-second resolution:
    the window ends a second after the last line), or None with fewer than 2 epochs."""
    ends: dict[int, time] = {}
    coarse = False
    for line in log.read_text().splitlines():
        m = EPOCH_LINE.match(line)
        if m:
            ends[int(m.group(2))] = _clock(m.group(1))
            coarse = "." not in m.group(1)
    if len(ends) < 2 or 1 not in ends:
        return None
    last = ends[max(ends)]
    if coarse:  # a one-second stamp: the line came at some point of that second
        last = (datetime.combine(datetime.min, last) + timedelta(seconds=1)).time()
    return ends[1], last


def loop_windows(log: Path) -> list[tuple[time, time]]:
    """The training loops of the epochs after the first, ``[start, end)`` each, from the epoch
    lines' millisecond stamps and their ``epoch_time_s`` / ``monitor_time_s``; empty for a log
    with one-second stamps (too coarse to place a loop)."""
    windows = []
    for line in log.read_text().splitlines():
        m = EPOCH_LINE.match(line)
        if not m or int(m.group(2)) == 1 or "." not in m.group(1):
            continue
        fields = {k: float(v) for k, v in FIELD.findall(line)}
        if "epoch_time_s" not in fields:
            continue
        end = datetime.combine(datetime.min, _clock(m.group(1))) - timedelta(
            seconds=fields.get("monitor_time_s", 0.0)
        )
        start = end - timedelta(seconds=fields["epoch_time_s"])
        windows.append((start.time(), end.time()))
    return windows


def loop_busy(samples: list[tuple[time, float]], windows: list[tuple[time, time]]) -> list[float]:
    """The samples whose whole period (the ``SAMPLE_PERIOD`` before them) lies in a loop."""
    out = []
    for t, v in samples:
        begin = (datetime.combine(datetime.min, t) - SAMPLE_PERIOD).time()
        if any(start <= begin and t < end for start, end in windows):
            out.append(v)
    return out


def steady_busy(samples: list[tuple[time, float]], window: tuple[time, time]) -> list[float]:
    start, end = window
    return [v for t, v in samples if start <= t < end]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", type=Path)
    ap.add_argument("log", type=Path)
    ap.add_argument("--label", default="engine")
    args = ap.parse_args(argv)
    window = steady_window(args.log)
    if window is None:
        print(f"{args.label}: GPU busy: fewer than 2 epochs in {args.log}", file=sys.stderr)
        return 1
    samples = read_samples(args.samples)
    busy = steady_busy(samples, window)
    if not busy:
        print(f"{args.label}: GPU busy: no samples between {window[0]} and {window[1]}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(
        f"{args.label}: GPU busy (nvidia-smi) over the epochs after the first, evaluation "
        f"included ({window[0]}-{window[1]}, {len(busy)} samples): median "
        f"{statistics.median(busy):.0f} %, mean {statistics.fmean(busy):.0f} %"
    )
    windows = loop_windows(args.log)
    inside = loop_busy(samples, windows)
    if inside:
        print(
            f"{args.label}: GPU busy (nvidia-smi) inside the training loops of "
            f"{len(windows)} epochs ({len(inside)} samples): median "
            f"{statistics.median(inside):.0f} %, mean {statistics.fmean(inside):.0f} %"
        )
    else:
        print(
            f"{args.label}: GPU busy inside the training loops: no sample falls wholly inside "
            "one (epochs shorter than the sample period, or a log without millisecond stamps)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
