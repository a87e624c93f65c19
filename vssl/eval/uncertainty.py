"""VSSL's uncertainty report: does the predicted variance flag the probe's mistakes?

For each test sample VSSL's posterior ``q(z | x)`` (the student's Gaussian) gives ``logvar``
(d,); its mean predicted variance is ``v_i = (1/d) sum_j exp(logvar_ij)``. The score is the
AUROC of ``v`` as a detector of the linear probe's wrong predictions (wrong = positive class),
computed in closed form as the Mann-Whitney statistic

``AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``

where ``R_pos`` is the sum of the positives' ranks among all scores (ties get their average
rank, i.e. count 1/2). 0.5 is chance, 1.0 means every error has a larger variance than every
correct prediction. It is undefined (NaN) when the probe is all right or all wrong.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from vssl.io import atomic_path

SIDECAR_SUFFIX = ".uncertainty.csv"
SIDECAR_COLUMNS = ("index", "label", "prediction", "correct", "mean_variance")


def mean_variance(logvar: np.ndarray) -> np.ndarray:
    """``v_i = mean_j exp(logvar_ij)`` per row, in float64 (N,)."""
    logvar = np.asarray(logvar, dtype=np.float64)
    if logvar.ndim != 2:
        raise ValueError(f"logvar must be (N, d), got shape {logvar.shape}")
    return np.exp(logvar).mean(axis=1)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` labels (module doc).

    Returns NaN (with a warning) when one of the two classes is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and positive must be 1-D of equal length: {scores.shape}, {positive.shape}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        warnings.warn(
            f"AUROC undefined: {n_pos} positive and {n_neg} negative samples", stacklevel=2
        )
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties, 1-based
    r_pos = ranks[positive].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def error_auroc(variance: np.ndarray, correct: np.ndarray) -> float:
    """AUROC of ``variance`` for detecting wrong predictions (``~correct`` is the positive class)."""
    return auroc(variance, ~np.asarray(correct, dtype=bool))


def sidecar_path(results_path: str | Path) -> Path:
    """``results/probes/x/seed0.json`` -> ``results/probes/x/seed0.uncertainty.csv``."""
    p = Path(results_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def write_sidecar(
    path: str | Path,
    variance: np.ndarray | None,
    labels: np.ndarray,
    predictions: np.ndarray,
) -> None:
    """Per-test-sample CSV (atomic): ``index,label,prediction,correct,mean_variance``.

    ``variance`` is None for features without a Gaussian head (every method but VSSL): the
    ``mean_variance`` cells are then empty (NaN to pandas), so every probe writes the same file
    and the pipeline can declare it as an output of every run.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    n = len(labels)
    if len(predictions) != n or (variance is not None and len(variance) != n):
        raise ValueError("variance, labels and predictions must have the same length")
    cells = [""] * n if variance is None else [f"{float(v):.9g}" for v in variance]
    lines = [",".join(SIDECAR_COLUMNS)]
    lines += [
        f"{i},{int(y)},{int(p)},{int(y == p)},{v}"
        for i, (y, p, v) in enumerate(zip(labels, predictions, cells, strict=True))
    ]
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
