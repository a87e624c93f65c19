"""`vssl prepare` (placeholder until implemented)."""

from __future__ import annotations

import argparse

from vssl.cli import add_params_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_params_arguments(p)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("vssl prepare")
