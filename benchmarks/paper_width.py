"""The paper's settings at the paper's width, on a CPU: does the default VSSL stay stable where
the 2025 reading collapsed?

Issue 10's collapse was measured on a GPU: `vssl pretrain --profile paper --dataset
cifar10_mini` (ResNet-18 width 64, the paper's heads 4096/256/4096, LARS at base lr 1.0, batch
256, a 1,000-epoch schedule with 10 warm-up epochs, bf16). This script reruns exactly that
command, through the engine, for the first ``--epochs`` epochs of the same 1,000-epoch schedule
(``--stop-after``), for each config side by side (default: VSSL, its 2025 reading, BYOL and the
untrained floor), then extracts frozen features and probes them with the pipeline's own
commands (``vssl extract``, ``vssl probe``: linear, kNN-20 and, for VSSL, the uncertainty AUROC
on the 1,000 held-out images). Rerunning with a larger ``--epochs`` continues the same runs.
``--set KEY=VALUE`` overrides params for pretraining (``pretrain.epochs=200``: a complete
200-epoch schedule; the dry run of ``benchmarks/gpu_study.sh`` shrinks the network with it);
extraction takes the data settings among them (the rest comes from the checkpoint), the probe
those and the ``probe`` section's; the overrides are written to ``<out>/overrides.txt`` and head
the report.

On CPUs with AMX (Intel Sapphire Rapids and later) bf16 autocast makes width 64 affordable: the
engine's step runs 2.5-2.6x faster than in fp32 there (docs/benchmarks.md, "bf16 on the CPU").
``--precision no`` runs fp32.

    python benchmarks/paper_width.py run --out /tmp/paper-width --epochs 20
    python benchmarks/paper_width.py report /tmp/paper-width
    python benchmarks/paper_width.py seeds /tmp/pw-seed0 /tmp/pw-seed1 /tmp/pw-seed2 --out DIR

``run`` writes ``<out>/<config>/`` (the run folder: history.csv, metrics.json, checkpoint.pt),
``<out>/<config>.log``, ``<out>/features/<config>/`` and ``<out>/probes/<config>.json``, then
the report: ``<out>/summary.md`` and ``<out>/curves.png`` (every history column per epoch).
``seeds`` reads several such folders (one ``run --seed S`` each) and writes ``seeds.md`` and
``seeds.csv``: every run's probes and end-of-run curves, each config's mean and sample std over
seeds, and VSSL minus each baseline present (BYOL, MoCo v3) paired by seed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILE = "paper"
DATASET = "cifar10_mini"
CONFIGS = ("vssl", "vssl_2025", "byol", "random")  # random: the untrained floor, no training
ORDER = ("vssl", "vssl_2025", "byol", "byol_clip", "mocov3", "random")  # how reports list configs
# The paper's baselines, and BYOL with VSSL's gradient clip: `seeds` pairs VSSL with each
BASELINES = {"byol": "BYOL", "byol_clip": "BYOL with VSSL's clip", "mocov3": "MoCo v3"}


def vssl_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vssl", *args]


def set_args(sets: Sequence[str]) -> list[str]:
    """``--set KEY=VALUE`` for each override, as every ``vssl`` command takes them."""
    return [a for kv in sets for a in ("--set", kv)]


def pretrain_cmd(
    config: str, out: Path, seed: int, epochs: int, precision: str, sets: Sequence[str] = ()
) -> list[str]:
    return vssl_cli(
        "pretrain", "--profile", PROFILE, "--dataset", DATASET, "--method", config,
        "--seed", str(seed), "--out", str(out / config), "--stop-after", str(epochs),
        "--set", f"pretrain.mixed_precision={precision}", *set_args(sets), "--no-mlflow",
        "--no-progress", "--resume",
    )  # fmt: skip


def checkpoint(run_dir: Path) -> Path:
    """The run's checkpoint: ``checkpoint.pt`` once the schedule is complete, else the
    resumable ``checkpoint.partial.pt`` that ``--stop-after`` leaves."""
    for name in ("checkpoint.pt", "checkpoint.partial.pt"):
        if (run_dir / name).exists():
            return run_dir / name
    raise SystemExit(f"{run_dir}: no checkpoint.pt or checkpoint.partial.pt")


_children: list[subprocess.Popen] = []


def _forward_signal(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT reach the `vssl` commands this script started: each pretraining run saves
    its last completed epoch and exits (``checkpoint_on_signal``), so ``run`` resumes."""
    for p in _children:
        if p.poll() is None:
            p.send_signal(signum)


def _start(cmd: list[str], **kwargs) -> subprocess.Popen:
    p = subprocess.Popen(cmd, **kwargs)
    _children.append(p)
    return p


def run(args: argparse.Namespace) -> None:
    from vssl.io import write_text

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "overrides.txt", "".join(f"{kv}\n" for kv in args.set))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _forward_signal)
    # Every config trains at once, each on its own threads: one process per config keeps their
    # runs independent, and the report compares them epoch by epoch.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    procs = {}
    start = time.time()
    for c in args.configs:
        cmd = pretrain_cmd(c, out, args.seed, args.epochs, args.precision, args.set)
        print("$", " ".join(cmd[1:]), flush=True)
        log = open(out / f"{c}.log", "a")  # noqa: SIM115 (closed when the process ends)
        procs[c] = (_start(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = []
    for c, (p, log) in procs.items():
        if p.wait() != 0:
            failed.append(c)
        log.close()
    print(f"pretraining: {time.time() - start:.0f} s", flush=True)
    if failed:
        raise SystemExit(f"pretraining failed for {', '.join(failed)}: see {out}/<config>.log")
    from vssl.eval.extract import DATA_SECTIONS

    # extraction takes everything but the data settings from the checkpoint; the probe also
    # takes the probe settings (a toy run's few images need a smaller kNN k)
    def section(kv: str) -> str:
        return kv.split(".", 1)[0].split("=", 1)[0]

    data_sets = [kv for kv in args.set if section(kv) in DATA_SECTIONS]
    probe_sets = [kv for kv in args.set if section(kv) == "probe"]

    def evaluate(c: str) -> str:
        """`vssl extract` then `vssl probe` for one config; returns their output and times."""
        feats = out / "features" / c
        common = ["--profile", PROFILE, *set_args(data_sets), "--no-mlflow"]
        steps = [
            vssl_cli("extract", "--checkpoint", str(checkpoint(out / c)), "--dataset", DATASET,
                     "--out", str(feats), *common),
            vssl_cli("probe", "--features", str(feats), "--out", str(out / "probes" / f"{c}.json"),
                     *common, *set_args(probe_sets)),
        ]  # fmt: skip
        text = ""
        for cmd in steps:
            t = time.time()
            p = _start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            text += p.communicate()[0] + f"{cmd[2]} {c}: {time.time() - t:.0f} s\n"
            if p.returncode != 0:
                raise SystemExit(f"{text}exit {p.returncode}: {' '.join(cmd[1:])}")
        return text

    # The configs' evaluations are independent: side by side, as their pretraining was.
    start = time.time()
    with ThreadPoolExecutor(max_workers=len(args.configs)) as pool:
        for text in pool.map(evaluate, args.configs):
            print(text, end="", flush=True)
    print(f"extraction and probes: {time.time() - start:.0f} s", flush=True)
    report(argparse.Namespace(out=str(out)))


def summarise(history: pd.DataFrame, probe: dict | None) -> dict:
    """One row: the curves' first, peak and last values, and the probes' top-1 (an untrained
    run has no history rows: probes only)."""
    row: dict = {"epochs": int(history["epoch"].max()) if len(history) else 0}
    if len(history):
        if "kl" in history:
            kl = history["kl"]
            row["KL first -> max (epoch) -> last"] = (
                f"{kl.iloc[0]:.3g} -> {kl.max():.3g} ({int(history.loc[kl.idxmax(), 'epoch'])}) "
                f"-> {kl.iloc[-1]:.3g}"
            )
        z = history["z_spread"]
        row["z_spread first -> min -> last"] = (
            f"{z.iloc[0]:.3f} -> {z.min():.3f} -> {z.iloc[-1]:.3f}"
        )
        for col in ("logvar_student", "logvar_teacher"):
            if col in history:
                v = history[col]
                row[f"{col} first -> last (min, max)"] = (
                    f"{v.iloc[0]:.2f} -> {v.iloc[-1]:.2f} ({v.min():.2f}, {v.max():.2f})"
                )
        row["online probe top-1, last"] = round(float(history["online_probe_top1"].iloc[-1]), 1)
    if probe:
        row["linear top-1"] = round(probe["linear_top1"], 1)
        row["kNN-20 top-1"] = round(probe["knn20_top1"], 1)
        if "uncertainty_error_auroc" in probe:
            row["error AUROC (posterior variance)"] = round(probe["uncertainty_error_auroc"], 3)
        if probe.get("uncertainty_error_auroc_knn20") is not None:  # probes since 2026-11-27
            row["error AUROC, kNN-20's errors"] = round(probe["uncertainty_error_auroc_knn20"], 3)
    steady = history["images_per_second"].iloc[1:] if len(history) else []
    if len(steady):
        row["images/s (epochs 2+, median)"] = round(float(steady.median()), 1)
    return row


def report(args: argparse.Namespace) -> None:
    from vssl.io import write_text
    from vssl.report.figures import load_histories, training_curves_figure

    out = Path(args.out)
    order = {c: i for i, c in enumerate(ORDER)}
    found = sorted(out.glob("*/history.csv"), key=lambda h: (order.get(h.parent.name, 99), h))
    if not found:
        raise SystemExit(f"{out}: no <config>/history.csv to report")
    rows = {}
    for h in found:
        c = h.parent.name
        probe_path = out / "probes" / f"{c}.json"
        probe = json.loads(probe_path.read_text()) if probe_path.exists() else None
        rows[c] = summarise(pd.read_csv(h), probe)
    # the pipeline's own reader and figure (training_curves.png), on this folder's layout
    runs = [
        SimpleNamespace(dataset=DATASET, method=c, variant=c, seed=0, history=f"{c}/history.csv")
        for c in rows
    ]
    table = pd.DataFrame(rows).T.fillna("-")  # "-": no probe for that run (yet)
    sets = overrides(out)
    text = (
        f"`vssl pretrain --profile {PROFILE} --dataset {DATASET}` (ResNet-18 width 64, heads "
        "4096/256/4096, LARS base lr 1.0 (MoCo v3: 0.3), batch 256, 1,000-epoch schedule, 10 "
        "warm-up epochs), first epochs of the schedule; probes from `vssl extract` + `vssl probe`."
        "\n\n"
        + (f"Overrides: {', '.join(f'`{kv}`' for kv in sets)}.\n\n" if sets else "")
        + table.to_markdown()
        + "\n"
    )
    write_text(out / "summary.md", text)
    training_curves_figure(load_histories(runs, out), out / "curves.png")
    print(text)


def seed_rows(folders: list[Path]) -> pd.DataFrame:
    """One row per (folder, config) with probe results: seed and epochs from the features'
    meta.json (what was actually extracted), probe top-1s and AUROC, last KL and z_spread."""
    rows = []
    for folder in folders:
        probes = sorted(folder.glob("probes/*.json"))
        if not probes:
            raise SystemExit(f"{folder}: no probes/<config>.json (run `paper_width.py run` first)")
        for probe_path in probes:
            c = probe_path.stem
            meta_path = folder / "features" / c / "meta.json"
            if not meta_path.is_file():
                raise SystemExit(f"{meta_path}: missing (the probe's features)")
            meta, probe = json.loads(meta_path.read_text()), json.loads(probe_path.read_text())
            row = {
                "config": c,
                "seed": int(meta["seed"]),
                "epochs": int(meta["epoch"]),
                "linear top-1": probe["linear_top1"],
                "kNN-20 top-1": probe["knn20_top1"],
                "error AUROC": probe.get("uncertainty_error_auroc"),
                "error AUROC, kNN-20's errors": probe.get("uncertainty_error_auroc_knn20"),
            }
            hist_path = folder / c / "history.csv"
            history = pd.read_csv(hist_path) if hist_path.is_file() else pd.DataFrame()
            # the checkpoint's epoch: the history may run ahead of an older extraction
            history = history[history["epoch"] <= row["epochs"]] if len(history) else history
            for col, name in (("kl", "KL, last"), ("z_spread", "z_spread, last")):
                if col in history and len(history):
                    row[name] = float(history[col].iloc[-1])
            rows.append(row)
    per_run = pd.DataFrame(rows)
    dup = per_run[per_run.duplicated(["config", "seed", "epochs"], keep=False)]
    if len(dup):
        raise SystemExit(f"the same config, seed and epoch in two folders:\n{dup}")
    return per_run


def overrides(folder: Path) -> list[str]:
    """The ``--set`` overrides ``run`` recorded in ``folder`` (none for older folders)."""
    path = folder / "overrides.txt"
    return path.read_text().splitlines() if path.is_file() else []


def seeds(args: argparse.Namespace) -> None:
    from vssl.io import write_text

    folders = [Path(f) for f in args.folders]
    sets = {tuple(overrides(f)) for f in folders}
    if len(sets) > 1:  # e.g. two schedule lengths: different measurements
        raise SystemExit(f"the folders were run with different --set overrides: {sorted(sets)}")
    sets = list(sets.pop())
    per_run = seed_rows(folders)
    order = {c: i for i, c in enumerate(ORDER)}
    rank = per_run["config"].map(order).fillna(len(order))
    per_run = per_run.assign(_rank=rank).sort_values(["_rank", "config", "seed"])
    per_run = per_run.drop(columns="_rank").reset_index(drop=True)
    metrics = [c for c in per_run.columns if c not in ("config", "seed", "epochs")]

    def mean_std(x: pd.Series) -> str:
        x = x.dropna().astype(float)
        if x.empty:
            return "-"
        return f"{x.mean():.3g}" if len(x) == 1 else f"{x.mean():.3g} ± {x.std(ddof=1):.2g}"

    # runs stopped at different epochs are different measurements: never averaged together
    summary = per_run.groupby(["config", "epochs"], sort=False).agg(
        seeds=("seed", lambda s: ", ".join(str(v) for v in s)),
        **{m: (m, mean_std) for m in metrics},
    )
    text = (
        f"`vssl pretrain --profile {PROFILE} --dataset {DATASET}` per seed (`paper_width.py run "
        "--seed S`); mean ± sample std over seeds.\n\n"
        + (f"Overrides: {', '.join(f'`{kv}`' for kv in sets)}.\n\n" if sets else "")
        + summary.reset_index().to_markdown(index=False)
        + "\n"
    )
    pivot = per_run.pivot(index=["epochs", "seed"], columns="config")
    for base, name in BASELINES.items():
        if not {"vssl", base} <= set(per_run["config"]):
            continue
        diff = pd.DataFrame(
            {m: pivot[(m, "vssl")] - pivot[(m, base)] for m in ("linear top-1", "kNN-20 top-1")}
        ).dropna()
        text += (
            f"\nVSSL minus {name}, paired by seed at the same epoch:\n\n"
            + diff.reset_index().round(1).to_markdown(index=False)
            + "\n\n"
            + "\n".join(
                f"- {e} epochs: " + ", ".join(f"{m} {mean_std(g[m])}" for m in diff.columns)
                for e, g in diff.groupby(level="epochs")
            )
            + "\n"
        )
    text += "\nEvery run:\n\n" + per_run.round(3).to_markdown(index=False) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "seeds.md", text)
    write_text(out / "seeds.csv", per_run.to_csv(index=False))
    print(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="pretrain the configs side by side, extract, probe, report")
    r.add_argument("--out", required=True)
    r.add_argument("--configs", nargs="+", default=list(CONFIGS))
    r.add_argument("--epochs", type=int, default=20, help="epochs of the 1,000-epoch schedule")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--precision", default="bf16", choices=["bf16", "no"])
    r.add_argument("--threads", type=int, default=1, help="threads per config")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override for every run (repeatable; its extraction and probe take the data "
        "settings among them), e.g. "
        "pretrain.epochs=200 for a complete 200-epoch schedule instead of the paper's 1,000",
    )
    r.set_defaults(func=run)
    p = sub.add_parser("report", help="summary.md and curves.png from a run folder")
    p.add_argument("out")
    p.set_defaults(func=report)
    s = sub.add_parser("seeds", help="seeds.md and seeds.csv: several `run --seed S` folders")
    s.add_argument("folders", nargs="+")
    s.add_argument("--out", required=True)
    s.set_defaults(func=seeds)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
