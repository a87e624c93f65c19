"""The table of docs/benchmarks.md ("The KL's weight"): one row per beta, mean ± sd over seeds.

Usage: python benchmarks/results/variance-auroc/beta/summarise.py [FOLDER]
(FOLDER: this folder, or run.sh's OUT), reading FOLDER/beta*-seed*/ (or bBETA-sSEED/).
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def row(d: Path) -> dict[str, float]:
    p = json.loads((d / "probe.json").read_text())
    a = json.loads((d / "auroc.json").read_text())
    loss = a["information_loss"]
    levels = loss["levels"]
    hist = (d / "history.csv") if (d / "history.csv").exists() else d / "run" / "history.csv"
    with open(hist) as f:
        h = list(csv.DictReader(f))[-1]  # the last epoch
    return {
        "linear": p["linear_top1"],
        "knn20": p["knn20_top1"],
        "auroc": p["uncertainty_error_auroc"],
        "-norm": a["auroc"]["-feature norm"],
        "rise %": 100 * (levels[-1]["student_variance"] / levels[0]["student_variance"] - 1),
        "mixed": loss["mixed"]["auroc"]["student variance"],
        "oracle": loss["mixed"]["auroc"]["1 - crop area (oracle)"],
        "kl": float(h["kl"]),
        "spread": float(h["z_spread"]),
        "logvar": float(h["logvar_student"]),
    }


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    runs: dict[float, list[dict[str, float]]] = defaultdict(list)
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"(?:beta|b)([\d.]+)-(?:seed|s)(\d+)", d.name)
        if m and (d / "auroc.json").exists():
            runs[float(m.group(1))].append(row(d))
    keys = ["linear", "knn20", "auroc", "-norm", "rise %", "mixed", "oracle", "kl", "spread",
            "logvar"]  # fmt: skip
    print("| beta | seeds | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for beta in sorted(runs):
        rs = runs[beta]
        cells = []
        for k in keys:
            v = [r[k] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.3g} ± {sd:.2g}")
        print(f"| {beta:g} | {len(rs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
