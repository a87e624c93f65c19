"""`vssl pretrain`: self-supervised pretraining of one (dataset, method, seed) into --out.

Also launchable as ``accelerate launch [--num_processes N] [--cpu] -m vssl pretrain ...``.
Exit status: 0 done, 2 bad input (config, data, output folder, checkpoint, existing outputs),
3 non-finite loss, 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM (SLURM, Snakemake):
the last completed epoch is saved in checkpoint.partial.pt first (see vssl.train.signals).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from vssl.cli import add_params_arguments, seed_arg

if TYPE_CHECKING:
    from vssl.train.plan import PretrainJob


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_params_arguments(p)
    p.add_argument("--dataset", required=True, help="registry name (see `datasets:` for npz)")
    p.add_argument(
        "--method",
        required=True,
        help="vssl | byol | mocov3 | simclr | barlow_twins | random, or a name under `variants:`",
    )
    p.add_argument("--seed", type=seed_arg, required=True)
    p.add_argument(
        "--out", required=True, help="run folder, e.g. runs/{profile}/{dataset}/{method}/seed{seed}"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs (default: params.yaml's for the dataset)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument(
        "--overwrite", action="store_true", help="delete the outputs in --out and start over"
    )
    p.add_argument(
        "--restart-incompatible",
        action="store_true",
        help="with --resume: start over, instead of failing, when the checkpoint was trained "
        "with other settings or epochs (the pipeline's rules pass it: they rerun a job only "
        "when its inputs changed)",
    )
    p.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log to MLflow (same as --set mlflow.enabled=false; mlflow is not imported)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="E",
        help="stop (checkpointed) after E epochs, keeping the schedule of --epochs; resume later",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tqdm progress bar (default: when stderr is a terminal)",
    )


def _setup_logging() -> None:
    from vssl.train.plan import process_state

    level = logging.INFO if process_state().is_main_process else logging.WARNING
    logger = logging.getLogger("vssl")
    if not logger.handlers:
        h = logging.StreamHandler(sys.stderr)
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        # 13:35:13.123: milliseconds place an epoch's lines against nvidia-smi's samples
        # (benchmarks/gpu_busy.py); epochs on a GPU are often shorter than a second.
        fmt.default_time_format, fmt.default_msec_format = "%H:%M:%S", "%s.%03d"
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.setLevel(level)


def make_job(args: argparse.Namespace) -> PretrainJob:
    """The job of parsed `vssl pretrain` arguments: params.yaml with the profile and the
    overrides, validated (ConfigError on bad input)."""
    from pathlib import Path

    from vssl.config import load_params
    from vssl.train.plan import PretrainJob

    overrides = [*args.overrides, *(["mlflow.enabled=false"] if args.no_mlflow else [])]
    params = load_params(args.params, profile=args.profile, overrides=overrides, entry=args.method)
    params.check_dataset(args.dataset)
    return PretrainJob(
        params=params,
        dataset=args.dataset,
        method=params.entry_method(args.method),
        variant=args.method,
        seed=args.seed,
        out_dir=Path(args.out),
        epochs=args.epochs,
        resume=args.resume,
        overwrite=args.overwrite,
        stop_after=args.stop_after,
        show_progress=args.progress,
        restart_incompatible=args.restart_incompatible,
    )


def run(args: argparse.Namespace) -> int:
    from vssl.train.engine import pretrain
    from vssl.train.guards import NonFiniteLossError
    from vssl.train.plan import process_state
    from vssl.train.signals import Interrupted

    job = make_job(args)
    _setup_logging()
    try:
        metrics = pretrain(job)
    except NonFiniteLossError as e:
        print(f"vssl pretrain: error: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        if process_state().is_main_process:
            print(f"vssl pretrain: {e.message()}", file=sys.stderr)
        return e.exit_code
    if metrics:
        keys = ("online_probe_top1", "knn_top1", "loss", "images_per_second", "wall_time_s")
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), float))
        print(f"vssl pretrain: {args.dataset}/{args.method}/seed{args.seed}: {shown} -> {args.out}")
    return 0
