"""`vssl validate`: check params.yaml once, before any rule or stage runs."""

from __future__ import annotations

import argparse
import sys

import yaml

from vssl.cli import add_params_arguments
from vssl.config import check_grid_matches_file, load_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_params_arguments(p)
    p.add_argument(
        "--dvc",
        action="store_true",
        help="also check that the top-level grid (read by dvc.yaml's matrix) is the profile's, and "
        "write what each stage reads to resolved/<profile>/ (the files DVC's stages depend on)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, profile=args.profile, overrides=args.overrides)
    if args.dvc:
        from vssl.workflow import write_resolved_inputs

        check_grid_matches_file(args.params, params)
        write_resolved_inputs(params)
    for entry in params.grid.methods:
        shadowed = params.for_entry(entry).shadowed_clip(params.entry_method(entry))
        if shadowed is not None:
            print(f"vssl validate: warning: grid entry {entry}: {shadowed}", file=sys.stderr)
    if not args.quiet:
        print(yaml.safe_dump(params.to_dict(), sort_keys=False), end="")
    return 0
