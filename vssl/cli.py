"""The `vssl` command line: one sub-command per pipeline stage.

Each sub-command lives in ``vssl/commands/<name>.py`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. Imports are lazy so ``vssl --help`` and config errors stay fast.
"""

from __future__ import annotations

import argparse
import errno
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


# Errors of the file system rather than of the code: reported in one line (exit 1).
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,  # no space left on device
    errno.EDQUOT,  # disk quota exceeded
    errno.EROFS,  # read-only file system
    errno.EACCES,  # permission denied
    errno.EPERM,
    errno.EIO,
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


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: an integer >= 0 (numpy and torch seed generators refuse
    negative ones, long after the run has started)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: must be >= 0")
    return value


def main(argv: list[str] | None = None) -> int:
    import faulthandler

    from vssl.config import ConfigError

    # A crash inside a native library (SIGSEGV, SIGABRT, ...) prints the Python stack to stderr,
    # i.e. into the job's log, instead of a bare non-zero exit under Snakemake or DVC.
    if not faulthandler.is_enabled():
        faulthandler.enable()

    args = build_parser().parse_args(argv)
    try:
        rc = int(args._module.run(args) or 0)
        if rc == 0 and argv is None:
            _ignore_stop_signals()
        return rc
    except ConfigError as e:
        print(f"vssl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # The machine, not the code: say which file and why, without a traceback. Outputs are
        # written all or nothing, so nothing half-written is left behind.
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"vssl {args.command}: error: {e.strerror}{where}", file=sys.stderr)
        return 1


def _ignore_stop_signals() -> None:
    """The command succeeded and its outputs are on disk: a SIGTERM or SIGINT while the
    interpreter shuts down (a second or so with torch and MLflow loaded) must not turn the
    exit status into 143/130, on which Snakemake deletes the finished outputs."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    raise SystemExit(main())
