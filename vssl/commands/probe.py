"""`vssl probe`: linear and kNN probes (and VSSL's uncertainty AUROC) on saved features.

    vssl probe --features FEATDIR --out results.json [--params params.yaml] [--profile X] [--set k=v]

Reads only ``FEATDIR/train.npz`` and ``FEATDIR/test.npz`` (never the network) and writes the flat
``results.json`` (keys: :mod:`vssl.eval.probe`) plus the per-test-sample sidecar
``<out stem>.uncertainty.csv`` (for every run; ``mean_variance`` is empty without VSSL's Gaussian
head). Logged to MLflow as a ``stage=probe`` run, nested under the pretraining run when the
features record its id (a standalone run otherwise).

Before any MLflow run starts: the output paths are checked (writable, not folders), the params
resolved, the features loaded and validated, their labels checked against the recorded
``num_classes``, and every ``probe.knn.k`` checked against the number of training features; any
problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from vssl.cli import add_params_arguments, seed_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features", required=True, type=Path, help="folder with train.npz and test.npz"
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="results JSON to write (and <stem>.uncertainty.csv beside it)",
    )
    add_params_arguments(p)
    p.add_argument(
        "--seed",
        type=seed_arg,
        default=None,
        help="seed of the linear probe's validation split (default: the features' pretraining "
        "seed, else 0)",
    )
    p.add_argument(
        "--device", default=None, help="torch device (default: the accelerator if any, else cpu)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace) -> int:
    from vssl import tracking
    from vssl.config import load_params
    from vssl.eval import features
    from vssl.eval.device import pick_device
    from vssl.eval.probe import check_knn_k, run_probes, write_report
    from vssl.eval.uncertainty import sidecar_path
    from vssl.io import check_writable_file

    check_writable_file(args.out)  # OutputPathError (a ConfigError): exit 2, nothing loaded
    check_writable_file(sidecar_path(args.out))
    device = pick_device(args.device)
    params = load_params(args.params, profile=args.profile, overrides=args.overrides)
    try:
        train, test = features.load_feature_dir(args.features)
        num_classes = features.num_classes_of(train, test)
    except features.FeatureError as e:
        print(f"vssl probe: error: {_one_line(e)}", file=sys.stderr)
        return 2
    check_knn_k(params.probe, train.n)  # ConfigError (exit 2) before the MLflow run starts
    meta = train.meta or features.read_meta(args.features)
    if meta.get("profile") not in (None, params.profile):
        print(
            f"vssl probe: warning: the features were extracted under profile "
            f"{meta['profile']!r}; probing with profile {params.profile!r}'s probe settings "
            "(pass --profile to choose)",
            file=sys.stderr,
        )
    seed = args.seed if args.seed is not None else int(meta.get("seed", 0))
    variant = meta.get("variant")
    if isinstance(variant, str) and variant in params.variants:
        # The run logs the whole config: a variant's own keys, as its pretraining run logged
        # them (a variant cannot change the probe settings, so the probe is the same).
        params = load_params(
            args.params, profile=args.profile, overrides=args.overrides, entry=variant
        )

    if args.no_mlflow:
        run_ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        run_ctx = tracking.start_run(
            params,
            stage="probe",
            dataset=str(meta.get("dataset", "unknown")),
            method=str(meta.get("method", "unknown")),
            variant=str(meta.get("variant", meta.get("method", "unknown"))),
            seed=int(meta.get("seed", seed)),
            parent_run_id=meta.get("mlflow_run_id") or None,
        )
    with run_ctx:
        report = run_probes(
            train,
            test,
            params.probe,
            seed=seed,
            num_classes=num_classes,
            device=device,
        )
        written = write_report(report, args.out, source=meta)
        if not args.no_mlflow:
            tracking.set_tags(
                {
                    "features": str(args.features),
                    "features_profile": meta.get("profile", "unknown"),
                    "probe_seed": seed,
                }
            )
            tracking.log_metrics(report.mlflow_metrics())
            for path in written:
                tracking.log_artifact(path)

    r = report.results
    knn = "  ".join(f"{k}={v:.2f}" for k, v in r.items() if k.startswith("knn"))
    line = (
        f"vssl probe: {args.features}: linear top1={r['linear_top1']:.2f} "
        f"top5={r['linear_top5']:.2f} (wd={r['linear_weight_decay']:g})  {knn}"
    )
    aucs = []  # (value, whose errors): the linear probe's, then each kNN's
    for key, value in r.items():
        if key.startswith("uncertainty_error_auroc"):
            k = key.removeprefix("uncertainty_error_auroc").removeprefix("_knn")
            aucs.append(
                (
                    "undefined" if value is None else f"{value:.3f}",
                    f"kNN-{k}'s" if k else "linear's errors",
                )
            )
    if aucs:
        line += "  uncertainty AUROC=" + ", ".join(f"{v} ({whose})" for v, whose in aucs)
    if r.get("feature_norm_error_auroc") is not None:
        line += f"  -feature norm AUROC={r['feature_norm_error_auroc']:.3f} (baseline)"
    print(line)
    print(f"vssl probe: wrote {', '.join(str(p) for p in written)}")
    return 0


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
