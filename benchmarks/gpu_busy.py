"""GPU busy % of an engine run's steady state, from ``nvidia-smi`` samples and the run's log.

``nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 200``
samples the whole run: start-up, the first epoch (compilation) and the rest. Only the samples
between the log line of epoch 1 and the line of the last epoch count (the steady epochs, their
evaluation included): a whole-run figure mostly measures compilation, when the GPU idles.

    python benchmarks/gpu_busy.py SAMPLES.csv PRETRAIN.log [--label byol]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from datetime import datetime, time, timedelta
from pathlib import Path

EPOCH_LINE = re.compile(r"^(\d\d:\d\d:\d\d) INFO vssl\.train: epoch (\d+)/(\d+) ")


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
    for line in log.read_text().splitlines():
        m = EPOCH_LINE.match(line)
        if m:
            ends[int(m.group(2))] = datetime.strptime(m.group(1), "%H:%M:%S").time()
    if len(ends) < 2 or 1 not in ends:
        return None
    last = ends[max(ends)]
    end = (datetime.combine(datetime.min, last) + timedelta(seconds=1)).time()
    return ends[1], end


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
    busy = steady_busy(read_samples(args.samples), window)
    if not busy:
        print(f"{args.label}: GPU busy: no samples between {window[0]} and {window[1]}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(
        f"{args.label}: GPU busy (nvidia-smi) over the epochs after the first, evaluation "
        f"included ({window[0]}-{window[1]}, {len(busy)} samples): median "
        f"{statistics.median(busy):.0f} %, mean {statistics.fmean(busy):.0f} %"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
