"""`vssl prepare`: verify (or download) a dataset in the data root and write its manifest.

The manifest path is checked first (exit 2: a folder, a parent that is a file, not writable).
A download that fails leaves nothing behind in the data root (no empty or partial folders) and
is one line on stderr, exit 2.
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


def run(args: argparse.Namespace) -> int:
    from vssl import data
    from vssl.config import load_params
    from vssl.io import check_writable_file, write_json

    # Checked before anything is read or downloaded: an unwritable manifest path is exit 2 now,
    # not after a download.
    check_writable_file(args.out, "manifest")
    params = load_params(args.params, profile=args.profile, overrides=args.overrides)
    params.check_dataset(args.dataset)
    manifest = data.prepare(args.dataset, params, download=not args.no_download)
    manifest["profile"] = params.profile
    write_json(args.out, manifest)
    counts = ", ".join(f"{s} {v['count']}" for s, v in manifest["splits"].items())
    print(f"vssl prepare: {args.dataset}: {counts} -> {args.out}")
    return 0
