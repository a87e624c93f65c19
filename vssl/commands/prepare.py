"""`vssl prepare`: verify (or download) a dataset in the data root and write its manifest."""

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


def run(args: argparse.Namespace) -> int:
    from vssl.config import load_params
    from vssl.data import prepare
    from vssl.io import write_json

    params = load_params(args.params, profile=args.profile, overrides=args.overrides)
    params.check_dataset(args.dataset)
    manifest = prepare(args.dataset, params, download=not args.no_download)
    manifest["profile"] = params.profile
    write_json(args.out, manifest)
    counts = ", ".join(f"{s} {v['count']}" for s, v in manifest["splits"].items())
    print(f"vssl prepare: {args.dataset}: {counts} -> {args.out}")
    return 0
