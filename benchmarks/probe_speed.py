"""Time the frozen-feature probes on random CIFAR-sized features (50000 x 512, 10 classes).

    python benchmarks/probe_speed.py [--n-train 50000] [--n-test 10000] [--dim 512]

Features are Gaussian noise around random class centres (signal strength ``--signal``), so both
probes do real work; the printed accuracies only show that they did. Uses the probe settings of
params.yaml's base config (``--profile`` to pick another).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vssl.config import load_params
from vssl.eval.features import FeatureSet
from vssl.eval.knn import knn_classify_multi
from vssl.eval.linear import linear_probe

ROOT = Path(__file__).resolve().parents[1]


def make_features(centres: np.ndarray, mix: np.ndarray, n: int, seed: int) -> FeatureSet:
    rng = np.random.default_rng(seed)
    classes, dim = centres.shape
    labels = rng.integers(0, classes, n)
    feats = (rng.normal(size=(n, dim)) + centres[labels]) @ mix
    return FeatureSet(feats.astype(np.float32), labels.astype(np.int64))


def mixing_matrix(dim: int, decay: float, seed: int) -> np.ndarray:
    """``Q diag(i^-decay) R`` with random rotations Q, R: correlated features whose spectrum
    decays like a real backbone's (decay 0: the identity, i.i.d. features)."""
    if decay == 0:
        return np.eye(dim)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    r, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q @ np.diag(np.arange(1, dim + 1) ** -decay) @ r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--signal", type=float, default=0.1)
    ap.add_argument(
        "--decay", type=float, default=0.0, help="spectrum decay of the features (0: i.i.d.)"
    )
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--profile", default=None)
    ap.add_argument("--lr", type=float, default=None, help="override probe.linear.lr")
    args = ap.parse_args()
    cfg = load_params(args.params, profile=args.profile).probe

    centres = np.random.default_rng(0).normal(size=(args.classes, args.dim)) * args.signal
    mix = mixing_matrix(args.dim, args.decay, seed=3)
    train = make_features(centres, mix, args.n_train, seed=1)
    test = make_features(centres, mix, args.n_test, seed=2)
    print(
        f"{args.n_train} train / {args.n_test} test x {args.dim} features, {args.classes} classes, "
        f"spectrum decay {args.decay}, torch threads={torch.get_num_threads()}"
    )

    t0 = time.perf_counter()
    lin = linear_probe(
        train.features,
        train.labels,
        test.features,
        test.labels,
        args.classes,
        weight_decays=cfg.linear.weight_decays,
        val_fraction=cfg.linear.val_fraction,
        max_iter=cfg.linear.max_iter,
        lr=args.lr or cfg.linear.lr,
    )
    t_lin = time.perf_counter() - t0
    its = {k: f.iterations for k, f in lin.fits.items()}
    print(
        f"linear probe: {t_lin:.2f} s ({len(cfg.linear.weight_decays)} weight decays + refit, "
        f"L-BFGS iterations {its}, converged {lin.converged}); top1 {lin.top1:.2f}%"
    )

    t0 = time.perf_counter()
    scores = knn_classify_multi(
        train.features, train.labels, test.features, cfg.knn.k, cfg.knn.temperature, args.classes
    )
    t_knn = time.perf_counter() - t0
    accs = {k: (s.argmax(1).numpy() == test.labels).mean() * 100 for k, s in scores.items()}
    print(f"kNN (k={cfg.knn.k}, one pass): {t_knn:.2f} s; top1 {accs}")
    print(f"total: {t_lin + t_knn:.2f} s")


if __name__ == "__main__":
    main()
