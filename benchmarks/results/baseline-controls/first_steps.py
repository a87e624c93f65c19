"""The method's gradient norm (before any clip) and learning rate at each of the first optimiser
steps of a `long` run: where a global-norm clip of 1.0 acts.

Usage: python benchmarks/results/baseline-controls/first_steps.py METHOD SEED OUT [--epochs N]
Trains METHOD (a method or variant) at `long`'s settings for N epochs (default 2) into OUT
(overwritten) through `vssl pretrain`, recording what ``train_step`` returns, and prints one
JSON list of ``[grad_norm, lr]`` per optimiser step.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import vssl.train.engine as engine
from vssl.cli import main as vssl_main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("seed")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    seen: list[list[float]] = []
    real = engine.train_step

    def recording(acc: Any, model: Any, optimizers: Any, *a: Any, **kw: Any) -> Any:
        out = real(acc, model, optimizers, *a, **kw)
        if "grad_norm" in out:
            seen.append([round(float(out["grad_norm"]), 3), optimizers[0].param_groups[0]["lr"]])
        return out

    engine.train_step = recording
    rc = vssl_main(
        [
            "pretrain",
            "--profile",
            "long",
            "--dataset",
            "cifar10_mini",
            "--method",
            args.method,
            "--seed",
            args.seed,
            "--out",
            args.out,
            "--stop-after",
            str(args.epochs),
            "--no-mlflow",
            "--no-progress",
            "--overwrite",
        ]  # fmt: skip
    )
    if rc:
        raise SystemExit(rc)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
