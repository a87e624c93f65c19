"""The frozen-feature file format: ``FEATDIR/train.npz``, ``FEATDIR/test.npz`` and ``meta.json``.

Each ``.npz`` holds

- ``features``: float32 (N, D), the frozen backbone's output;
- ``labels``: int64 (N,), class indices in ``[0, num_classes)``;
- for VSSL only, ``mu`` and ``logvar``: float32 (N, d), the posterior ``q(z | x)`` (student);
- optionally ``meta``: a 0-d unicode array holding a JSON object (pretraining run id, dataset,
  method, seed, profile, ``extraction_id``, ...). Both splits of one extraction carry the same
  ``meta``, so a train file from one checkpoint can never be probed against another's test file.

``meta.json`` beside them is a human-readable copy of that object (Snakemake, DVC and people read
it; the probe trusts the copy inside the ``.npz`` files). Every write is atomic (``vssl.io``).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vssl.io import atomic_path, write_json

REQUIRED_ARRAYS = ("features", "labels")
GAUSSIAN_ARRAYS = ("mu", "logvar")
SPLITS = ("train", "test")
META_FILE = "meta.json"


class FeatureError(ValueError):
    """A missing, malformed or inconsistent feature file; the message names the file and array."""


@dataclass(frozen=True)
class FeatureSet:
    """One split's frozen features (:func:`load_features` returns them validated)."""

    features: np.ndarray
    labels: np.ndarray
    mu: np.ndarray | None = None
    logvar: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def has_gaussian(self) -> bool:
        return self.mu is not None


def validate_arrays(arrays: Mapping[str, Any], source: str = "features") -> FeatureSet:
    """Check and normalise raw arrays into a :class:`FeatureSet`, or raise :class:`FeatureError`.

    Rules: ``features`` is 2-D floating with N >= 1 rows and finite values (cast to float32);
    ``labels`` is 1-D integer, non-negative, length N (cast to int64); ``mu`` and ``logvar``
    come together, are 2-D, finite, of equal shape (N, d).
    """
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise FeatureError(
            f"{source}: missing array(s) {', '.join(missing)}; found: {', '.join(arrays) or 'none'}"
        )
    feats = np.asarray(arrays["features"])
    labels = np.asarray(arrays["labels"])
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise FeatureError(
            f"{source}: `features` must be a non-empty (N, D) array, got {feats.shape}"
        )
    if not np.issubdtype(feats.dtype, np.floating):
        raise FeatureError(f"{source}: `features` must be floating point, got {feats.dtype}")
    if labels.ndim != 1:
        raise FeatureError(f"{source}: `labels` must be 1-D (N,), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise FeatureError(f"{source}: `labels` must be integers, got {labels.dtype}")
    n = feats.shape[0]
    if labels.shape[0] != n:
        raise FeatureError(
            f"{source}: mismatched lengths: `features` has {n} rows, `labels` has {labels.shape[0]}"
        )
    if labels.min() < 0:
        raise FeatureError(f"{source}: `labels` must be >= 0, found {int(labels.min())}")
    _check_finite(feats, "features", source)

    has = [k in arrays for k in GAUSSIAN_ARRAYS]
    mu = logvar = None
    if any(has):
        if not all(has):
            present = GAUSSIAN_ARRAYS[has.index(True)]
            raise FeatureError(
                f"{source}: `{present}` present without its partner (need mu and logvar)"
            )
        mu = np.asarray(arrays["mu"])
        logvar = np.asarray(arrays["logvar"])
        for name, a in (("mu", mu), ("logvar", logvar)):
            if a.ndim != 2 or a.shape[0] != n or not np.issubdtype(a.dtype, np.floating):
                raise FeatureError(
                    f"{source}: `{name}` must be floating (N={n}, d), got {a.dtype} {a.shape}"
                )
            _check_finite(a, name, source)
        if mu.shape != logvar.shape:
            raise FeatureError(f"{source}: `mu` {mu.shape} and `logvar` {logvar.shape} differ")
        mu, logvar = mu.astype(np.float32, copy=False), logvar.astype(np.float32, copy=False)

    meta: dict[str, Any] = {}
    if "meta" in arrays:
        meta = _decode_meta(arrays["meta"], source)
    return FeatureSet(
        feats.astype(np.float32, copy=False), labels.astype(np.int64, copy=False), mu, logvar, meta
    )


def _check_finite(a: np.ndarray, name: str, source: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise FeatureError(
            f"{source}: `{name}` has {int(bad.sum())} non-finite value(s) (NaN/inf) in "
            f"{rows.size} row(s), first row {int(rows[0])}"
        )


def _decode_meta(arr: Any, source: str) -> dict[str, Any]:
    try:
        meta = json.loads(str(np.asarray(arr)[()]))
    except (ValueError, TypeError) as e:
        raise FeatureError(f"{source}: `meta` is not a JSON object: {e}") from None
    if not isinstance(meta, dict):
        raise FeatureError(f"{source}: `meta` must be a JSON object, got {type(meta).__name__}")
    return meta


def save_features(path: str | Path, fs: FeatureSet) -> None:
    """Write one split atomically as an uncompressed ``.npz`` (validated first)."""
    arrays: dict[str, np.ndarray] = {"features": fs.features, "labels": fs.labels}
    if fs.has_gaussian:
        arrays["mu"], arrays["logvar"] = fs.mu, fs.logvar
    if fs.meta:
        arrays["meta"] = np.array(json.dumps(fs.meta, sort_keys=True))
    validate_arrays(arrays, source=str(path))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_features(path: str | Path) -> FeatureSet:
    """Read and validate one ``.npz`` split; every problem is a :class:`FeatureError`."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"feature file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise FeatureError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return validate_arrays(arrays, source=str(path))


def load_feature_dir(feat_dir: str | Path) -> tuple[FeatureSet, FeatureSet]:
    """Load ``train.npz`` and ``test.npz`` and check that they belong together.

    Same feature dimension, both with or both without ``mu``/``logvar`` (of the same width), and
    identical ``meta`` when both carry one (one extraction).
    """
    feat_dir = Path(feat_dir)
    if not feat_dir.is_dir():
        raise FeatureError(f"feature folder not found: {feat_dir}")
    train, test = (load_features(feat_dir / f"{s}.npz") for s in SPLITS)
    where = f"{feat_dir}: train.npz and test.npz"
    if train.dim != test.dim:
        raise FeatureError(f"{where} have different feature dimensions ({train.dim} vs {test.dim})")
    if train.has_gaussian != test.has_gaussian:
        raise FeatureError(f"{where} disagree on mu/logvar (present in one split only)")
    if train.has_gaussian and train.mu.shape[1] != test.mu.shape[1]:
        raise FeatureError(f"{where} have different latent widths")
    if train.meta and test.meta and train.meta != test.meta:
        raise FeatureError(f"{where} come from different extractions (their `meta` differ)")
    return train, test


def num_classes_of(*sets: FeatureSet) -> int:
    """``meta['num_classes']`` when recorded (and consistent with the labels), else max label + 1."""
    top = max(int(s.labels.max()) for s in sets) + 1
    declared = next((s.meta.get("num_classes") for s in sets if s.meta.get("num_classes")), None)
    if declared is None:
        return top
    if top > int(declared):
        raise FeatureError(f"labels reach {top - 1} but meta declares num_classes={declared}")
    return int(declared)


def write_meta(feat_dir: str | Path, meta: Mapping[str, Any]) -> None:
    """Write the human-readable ``meta.json`` copy atomically."""
    write_json(Path(feat_dir) / META_FILE, dict(meta))


def read_meta(feat_dir: str | Path) -> dict[str, Any]:
    """The metadata of a feature folder: the ``.npz`` copy if any, else ``meta.json``, else {}."""
    feat_dir = Path(feat_dir)
    train = feat_dir / "train.npz"
    if train.is_file():
        try:
            with np.load(train, allow_pickle=False) as z:
                if "meta" in z.files:
                    return _decode_meta(z["meta"], str(train))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            pass  # load_features reports a broken file with the full message
    path = feat_dir / META_FILE
    if path.is_file():
        try:
            meta = json.loads(path.read_text())
        except ValueError as e:
            raise FeatureError(f"{path}: not valid JSON: {e}") from None
        if isinstance(meta, dict):
            return meta
    return {}
