"""Every frozen-feature probe on one feature folder -> one flat results dict.

``results.json`` keys (accuracies in percent, [0, 100]):
``linear_top1 linear_top5 linear_weight_decay knn{k}_top1 knn{k}_top5`` (one pair per configured
k, e.g. 20 and 200) ``n_train n_test feature_dim num_classes``,
``feature_norm_error_auroc`` for every run (how well minus the feature's norm ranks the linear
probe's errors: a label-free uncertainty every method's features give, the baseline beside
VSSL's variance; null when undefined), and for VSSL features also
``uncertainty_error_auroc`` (how well the posterior's mean variance ranks the linear probe's
errors; null when undefined), ``uncertainty_error_auroc_knn{k}`` (the same variance against
the k-NN classifier's errors, one per configured k) and ``uncertainty_mean_variance``.
Per-test-sample linear-probe correctness and (VSSL) variance go to the sidecar
``<results stem>.uncertainty.csv`` (:mod:`vssl.eval.uncertainty`), written for every run
(``mean_variance`` empty without a Gaussian head).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vssl.config import ConfigError, ProbeCfg
from vssl.eval.features import FeatureSet, num_classes_of
from vssl.eval.knn import knn_classify_multi
from vssl.eval.linear import LinearProbeResult, linear_probe
from vssl.eval.metrics import class_rank, topk_accuracy
from vssl.eval.uncertainty import error_auroc, mean_variance, sidecar_path, write_sidecar
from vssl.io import staged_paths, write_json


@dataclass
class ProbeReport:
    """What :func:`run_probes` measured. ``results`` is exactly what goes to results.json."""

    results: dict[str, Any]
    linear: LinearProbeResult
    test_labels: np.ndarray
    variance: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray:
        """Linear-probe correctness per test sample (bool)."""
        return self.linear.predictions == self.test_labels

    def mlflow_metrics(self) -> dict[str, float]:
        """results (minus nulls) + validation top-1 per weight decay + timings, for MLflow."""
        m = {k: float(v) for k, v in self.results.items() if v is not None}
        m.update({f"linear_val_top1_wd{wd:g}": acc for wd, acc in self.linear.val_top1.items()})
        m.update({f"seconds_{k}": v for k, v in self.seconds.items()})
        m.update({f"linear_iterations_{k}": f.iterations for k, f in self.linear.fits.items()})
        m["linear_converged"] = float(self.linear.converged)
        return m


def check_knn_k(cfg: ProbeCfg, n_train: int) -> None:
    """Raise ``ConfigError`` when a configured kNN k exceeds the ``n_train`` training features:
    the kNN would clamp k to the bank size and its results would still be labelled with the
    requested k (``knn100000_top1`` computed with k=512)."""
    too_big = [k for k in cfg.knn.k if k > n_train]
    if too_big:
        raise ConfigError(
            f"probe.knn.k: k={', '.join(map(str, too_big))} exceeds the {n_train} training "
            f"features; use k <= {n_train}"
        )


def run_probes(
    train: FeatureSet,
    test: FeatureSet,
    cfg: ProbeCfg,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
) -> ProbeReport:
    """Linear probe, kNN for every ``cfg.knn.k`` and (with mu/logvar) the uncertainty AUROC.

    ``seed`` fixes the linear probe's validation split; nothing else is random. ``device``
    (default CPU) runs both probes there, e.g. on the accelerator.
    """
    device = torch.device(device or "cpu")
    check_knn_k(cfg, train.n)  # before the linear probe's minutes of fitting
    if train.dim != test.dim:
        raise ValueError(f"train and test feature dims differ: {train.dim} vs {test.dim}")
    if num_classes is None:
        num_classes = num_classes_of(train, test)
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}

    t0 = time.perf_counter()
    lin = linear_probe(
        train.features,
        train.labels,
        test.features,
        test.labels,
        num_classes,
        weight_decays=cfg.linear.weight_decays,
        val_fraction=cfg.linear.val_fraction,
        max_iter=cfg.linear.max_iter,
        lr=cfg.linear.lr,
        seed=seed,
        device=device,
    )
    seconds["linear"] = time.perf_counter() - t0
    results.update(linear_top1=lin.top1, linear_top5=lin.top5, linear_weight_decay=lin.weight_decay)

    t0 = time.perf_counter()
    scores = knn_classify_multi(
        torch.from_numpy(train.features).to(device),
        train.labels,
        test.features,
        cfg.knn.k,
        cfg.knn.temperature,
        num_classes,
    )
    test_y = torch.from_numpy(test.labels).to(device)
    for k, s in scores.items():
        acc = topk_accuracy(s, test_y, (1, 5))
        results[f"knn{k}_top1"], results[f"knn{k}_top5"] = acc[1], acc[5]
    seconds["knn"] = time.perf_counter() - t0

    results.update(
        n_train=train.n, n_test=test.n, feature_dim=train.dim, num_classes=int(num_classes)
    )
    report = ProbeReport(results, lin, test.labels, seconds=seconds)
    norm = np.linalg.norm(test.features.astype(np.float64), axis=1)
    auc = error_auroc(-norm, report.correct)
    results["feature_norm_error_auroc"] = None if math.isnan(auc) else auc
    if test.has_gaussian:
        report.variance = mean_variance(test.logvar)
        auc = error_auroc(report.variance, report.correct)
        results["uncertainty_error_auroc"] = None if math.isnan(auc) else auc
        for k, s in scores.items():  # correct as knn{k}_top1 counts it (class_rank's ties)
            auc = error_auroc(report.variance, (class_rank(s, test_y) == 0).cpu().numpy())
            results[f"uncertainty_error_auroc_knn{k}"] = None if math.isnan(auc) else auc
        results["uncertainty_mean_variance"] = float(report.variance.mean())
    return report


# What the results JSON records of the run its features came from (``source``): the table
# checks it against the path it reads the file from.
SOURCE_KEYS = ("profile", "dataset", "method", "variant", "seed", "checkpoint_sha256")


def write_report(
    report: ProbeReport, out: str | Path, source: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write results.json (flat, sorted keys) and its uncertainty sidecar, all or nothing.

    The sidecar is written for every run (empty ``mean_variance`` without a Gaussian head), so
    it is a declared output of the probe stage. Both go to temporary files first and are renamed
    into place only once both are written (a full disk leaves the previous pair, or nothing, not
    a new sidecar beside an old results.json). ``source`` (the features' metadata) adds a
    ``source`` object with its :data:`SOURCE_KEYS`, so a results file copied to another run's
    place is caught by ``vssl table``. Returns ``[results.json, sidecar]``.
    """
    results: dict[str, Any] = dict(report.results)
    if source:
        results["source"] = {k: source[k] for k in SOURCE_KEYS if k in source}
    out = Path(out)
    side = sidecar_path(out)
    with staged_paths([side, out]) as (tmp_side, tmp_out):
        write_sidecar(tmp_side, report.variance, report.test_labels, report.linear.predictions)
        write_json(tmp_out, results)
    return [out, side]
