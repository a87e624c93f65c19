"""The `vssl` command line: one sub-command per pipeline stage.

Each sub-command lives in ``vssl/commands/<name>.py`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. Imports are lazy so ``vssl --help`` and config errors stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "validate": "Validate params.yaml (profile and overrides applied) and print the resolved config",
    "prepare": "Verify (or download) a dataset in the data root and write its manifest",
    "pretrain": "Self-supervised pretraining (Accelerate: CPU, one or several GPUs)",
    "extract": "Extract frozen backbone features (and VSSL's mu/logvar) to .npz",
    "probe": "Linear and kNN probes (and VSSL's uncertainty AUROC) on saved features",
    "table": "Aggregate probe results into results/table.csv and seaborn figures",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vssl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        module = importlib.import_module(f"vssl.commands.{name}")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def add_params_arguments(p: argparse.ArgumentParser) -> None:
    """The options every stage shares: params file, profile and overrides."""
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, help="profile to apply (default: params.yaml's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any params value, e.g. --set pretrain.epochs=5 (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    from vssl.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except ConfigError as e:
        print(f"vssl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
