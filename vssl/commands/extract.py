"""`vssl extract`: frozen backbone features (and VSSL's mu/logvar) of a checkpoint to .npz.

    vssl extract --checkpoint DIR/checkpoint.pt --dataset NAME --out FEATDIR
                 [--params params.yaml] [--profile X] [--set k=v]

Writes ``FEATDIR/train.npz``, ``FEATDIR/test.npz`` (``features``, ``labels``; VSSL also ``mu``,
``logvar``) and ``FEATDIR/meta.json``; see :mod:`vssl.eval.extract` for where each setting comes
from. Logged to MLflow as a ``stage=extract`` run nested under the pretraining run.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from vssl.cli import add_params_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint.pt (or the run folder)"
    )
    p.add_argument("--dataset", required=True, help="dataset registry name (the checkpoint's)")
    p.add_argument("--out", required=True, type=Path, help="feature folder to write")
    add_params_arguments(p)
    p.add_argument(
        "--allow-dataset-mismatch",
        action="store_true",
        help="extract a dataset other than the one the checkpoint was pretrained on",
    )
    p.add_argument(
        "--device", default=None, help="torch device (default: the accelerator if any, else cpu)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace) -> int:
    from vssl import tracking
    from vssl.eval.device import pick_device
    from vssl.eval.extract import check_feature_dir, extraction_params, plan_extraction
    from vssl.train.checkpoint import load_checkpoint

    # Every check (output folder, checkpoint, finite weights, params, dataset files) happens
    # before the MLflow run starts or a single image is processed; each is a ConfigError (exit 2).
    check_feature_dir(args.out)
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    params = extraction_params(ckpt, args.params, args.profile, args.overrides)
    ckpt_path = args.checkpoint / "checkpoint.pt" if args.checkpoint.is_dir() else args.checkpoint
    plan = plan_extraction(
        ckpt,
        args.dataset,
        params,
        checkpoint_path=ckpt_path,
        allow_dataset_mismatch=args.allow_dataset_mismatch,
    )

    if args.no_mlflow:
        run_ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        run_ctx = tracking.start_run(
            params,
            stage="extract",
            dataset=args.dataset,
            method=ckpt["method"],
            variant=ckpt.get("variant", ckpt["method"]),
            seed=int(ckpt["seed"]),
            parent_run_id=ckpt.get("mlflow_run_id") or None,
        )
    with run_ctx:
        ext = plan.run(device)
        written = ext.write(args.out)
        if not args.no_mlflow:
            tracking.set_tags(
                {
                    "checkpoint": str(ckpt_path),
                    "checkpoint_epoch": ckpt["epoch"],
                    "features": str(args.out),
                    "device": str(device),
                }
            )
            tracking.log_metrics(
                {
                    "n_train": ext.train.n,
                    "n_test": ext.test.n,
                    "feature_dim": ext.train.dim,
                    "latent_dim": ext.meta["latent_dim"],
                    "extract_seconds": ext.seconds,
                }
            )
            tracking.log_artifact(args.out / "meta.json")

    gauss = f", mu/logvar {ext.train.mu.shape[1]}" if ext.train.has_gaussian else ""
    print(
        f"vssl extract: {ckpt['method']} seed {ckpt['seed']} on {args.dataset}: "
        f"train {ext.train.features.shape}, test {ext.test.features.shape}{gauss} "
        f"in {ext.seconds:.1f}s on {device}; wrote {', '.join(str(p) for p in written)}"
    )
    return 0
