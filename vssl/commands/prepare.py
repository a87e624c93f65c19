"""`vssl prepare`: verify (or download) a dataset in the data root and write its manifest.

The manifest path is checked first (exit 2: a folder, a parent that is a file, not writable).
A download that fails leaves nothing behind in the data root (no empty or partial folders) and
is one line on stderr, exit 2.

Logged to MLflow as a ``stage=prepare`` run per dataset (tagged with the grid's methods and
seeds, which all train on it): the split counts as metrics, each data file's SHA-256 as a tag
``sha256.<file>`` and the manifest as an artifact, so the compare view says which data a
profile's runs read.
"""

from __future__ import annotations

import argparse

from vssl.cli import add_params_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_params_arguments(p)
    p.add_argument("--dataset", required=True, help="registry name (see `datasets:` for npz)")
    p.add_argument(
        "--out",
        required=True,
        help="manifest path, e.g. data/prepared/{profile}/{dataset}.json",
    )
    p.add_argument(
        "--no-download",
        action="store_true",
        help="only verify; never try to download missing torchvision datasets",
    )
    p.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log to MLflow (same as --set mlflow.enabled=false; mlflow is not imported)",
    )


def run(args: argparse.Namespace) -> int:
    from vssl import data, tracking
    from vssl.config import load_params
    from vssl.io import check_writable_file, write_json

    # Checked before anything is read or downloaded: an unwritable manifest path is exit 2 now,
    # not after a download.
    check_writable_file(args.out, "manifest")
    overrides = [*args.overrides, *(["mlflow.enabled=false"] if args.no_mlflow else [])]
    params = load_params(args.params, profile=args.profile, overrides=overrides)
    params.check_dataset(args.dataset)
    manifest = data.prepare(args.dataset, params, download=not args.no_download)
    manifest["profile"] = params.profile
    g = params.grid
    with tracking.start_run(
        params,
        stage="prepare",
        dataset=args.dataset,
        method=",".join(g.methods),
        seed=",".join(map(str, g.seeds)),  # type: ignore[arg-type]
        run_name=f"prepare-{params.profile}-{args.dataset}",
    ):
        write_json(args.out, manifest)
        tracking.log_metrics({f"{s}_count": v["count"] for s, v in manifest["splits"].items()})
        tracking.set_tags({f"sha256.{f}": h for f, h in (manifest.get("sha256") or {}).items()})
        tracking.log_artifact(args.out)
    counts = ", ".join(f"{s} {v['count']}" for s, v in manifest["splits"].items())
    print(f"vssl prepare: {args.dataset}: {counts} -> {args.out}")
    return 0
