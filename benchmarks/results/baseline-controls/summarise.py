"""The table of docs/benchmarks.md ("Is VSSL's lead over BYOL the gradient clip's?"): one row
per control, mean ± sd over seeds, then the per-seed values and the paired differences.

Usage: python benchmarks/results/baseline-controls/summarise.py [FOLDER]
(FOLDER: this folder, or run.sh's OUT), reading FOLDER/CONTROL-sSEED/ with probe.json and
history.csv (or run/history.csv). VSSL's rows at the same settings and code path are the
default's runs of the beta study (``../variance-auroc/beta/beta1-seed*``), read as ``vssl``.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
VSSL = HERE.parent / "variance-auroc" / "beta"


def row(d: Path) -> dict[str, float]:
    p = json.loads((d / "probe.json").read_text())
    hist = d / "history.csv" if (d / "history.csv").exists() else d / "run" / "history.csv"
    with open(hist) as f:
        h = list(csv.DictReader(f))
    spreads = [float(r["z_spread"]) for r in h]
    norms = [float(r["grad_norm"]) for r in h if r.get("grad_norm")]
    out = {
        "linear": p["linear_top1"],
        "knn20": p["knn20_top1"],
        "knn200": p["knn200_top1"],
        "online": float(h[-1]["online_probe_top1"]),
        "spread_min": min(spreads),
        "spread_last": spreads[-1],
    }
    if norms:
        out["grad_norm_median"] = statistics.median(norms)
        out["grad_norm_max"] = max(norms)
    return out


def collect(root: Path) -> dict[str, dict[int, dict[str, float]]]:
    runs: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"(\w+?)-s(?:eed)?(\d+)", d.name)
        if m and (d / "probe.json").exists():
            runs[m.group(1)][int(m.group(2))] = row(d)
    for d in sorted(VSSL.glob("beta1-seed*")):
        runs["vssl"][int(d.name.removeprefix("beta1-seed"))] = row(d)
    return runs


def mean_sd(v: list[float]) -> str:
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.1f} ± {sd:.1f}"


def main() -> None:
    runs = collect(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    keys = ["linear", "knn20", "knn200", "online"]
    print(
        "| entry | seeds | "
        + " | ".join(keys)
        + " | spread, lowest -> last | per seed (linear / kNN-20) |"
    )
    print("|---" * (len(keys) + 4) + "|")
    for name, seeds in runs.items():
        rs = [seeds[s] for s in sorted(seeds)]
        cells = [mean_sd([r[k] for r in rs]) for k in keys]
        spread = (
            f"{min(r['spread_min'] for r in rs):.2f}-{max(r['spread_min'] for r in rs):.2f} -> "
            f"{min(r['spread_last'] for r in rs):.2f}-{max(r['spread_last'] for r in rs):.2f}"
        )
        per_seed = ", ".join(f"{r['linear']:.1f} / {r['knn20']:.1f}" for r in rs)
        print(f"| `{name}` | {len(rs)} | " + " | ".join(cells) + f" | {spread} | {per_seed} |")
    print()
    for name, seeds in runs.items():
        for s in sorted(seeds):
            if "grad_norm_median" in seeds[s]:
                r = seeds[s]
                print(
                    f"{name} seed {s}: grad_norm per epoch, median {r['grad_norm_median']:.3g}, "
                    f"max {r['grad_norm_max']:.3g}"
                )
    print()
    for a, b in (("vssl", "byol"), ("vssl", "byol_clip"), ("byol_clip", "byol")):
        common = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
        if not common:
            continue
        for k in ("linear", "knn20"):
            d = [runs[a][s][k] - runs[b][s][k] for s in common]
            print(
                f"{a} - {b}, {k}, paired over seeds {common}: "
                + ", ".join(f"{x:+.1f}" for x in d)
                + f"; {mean_sd(d)}"
            )


if __name__ == "__main__":
    main()
