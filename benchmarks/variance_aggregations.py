"""Is it the scalar? The error AUROC of other summaries of VSSL's posterior log-variance.

The pipeline scores each held-out image by the mean of its predicted variances over the latent
coordinates (``uncertainty_mean_variance``). A few coordinates could carry the information and
the mean could dilute it; this script scores the same probe errors (the sidecar that ``vssl
probe`` writes beside its JSON) by other summaries of the same ``logvar`` (the ``vssl extract``
folder's ``test.npz``): the mean log-variance (the posterior's entropy up to constants), the
median, min, max, the mean of the top tenth, the spread across coordinates, the same after
standardising each coordinate by the training images' statistics, and the projection on the
training log-variances' first principal component; with minus the norm of ``mu`` as a
label-free baseline. 0.5: no information. With several runs it prints each summary's mean and
standard deviation over them.

    python benchmarks/variance_aggregations.py FEATURES SIDECAR [FEATURES SIDECAR ...] [--out J]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vssl.eval.uncertainty import auroc  # noqa: E402


def summaries(
    logvar: np.ndarray, train_logvar: np.ndarray, mu: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-image scores (N,) from the test ``logvar`` (N, d), larger = less certain."""
    lv, lvt = logvar.astype(np.float64), train_logvar.astype(np.float64)
    top = max(1, lv.shape[1] // 10)
    z = (lv - lvt.mean(0)) / np.maximum(lvt.std(0), 1e-12)
    _, _, vt = np.linalg.svd(lvt - lvt.mean(0), full_matrices=False)
    pc1 = (lv - lvt.mean(0)) @ vt[0]
    pc1 *= np.sign(np.corrcoef(pc1, lv.mean(1))[0, 1]) or 1.0  # oriented like the mean
    return {
        "mean variance (reported)": np.exp(lv).mean(1),
        "mean log-variance": lv.mean(1),
        "median log-variance": np.median(lv, 1),
        "min log-variance": lv.min(1),
        "max log-variance": lv.max(1),
        "top tenth, mean log-variance": np.sort(lv, 1)[:, -top:].mean(1),
        "spread of log-variance (std over coordinates)": lv.std(1),
        "standardised log-variance, mean": z.mean(1),
        "standardised log-variance, top tenth": np.sort(z, 1)[:, -top:].mean(1),
        "first principal component of log-variance": pc1,
        "-|mu| (label-free baseline)": -np.linalg.norm(mu.astype(np.float64), axis=1),
    }


def unit(a: np.ndarray) -> np.ndarray:
    """Rows of ``a`` scaled to unit length (zero rows stay zero)."""
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def density(test: np.ndarray, train: np.ndarray, k: int = 20) -> np.ndarray:
    """Mean cosine similarity of each test row to its ``k`` nearest training rows (float64)."""
    sim = unit(test.astype(np.float64)) @ unit(train.astype(np.float64)).T
    return np.sort(sim, axis=1)[:, -k:].mean(1)


def read_sidecar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(test indices, wrong) from a probe's ``.uncertainty.csv``."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    index = np.array([int(r["index"]) for r in rows])
    wrong = np.array([int(r["correct"]) == 0 for r in rows])
    return index, wrong


def load_run(features: Path, sidecar: Path) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """``(test.npz, train.npz, test indices, wrong)`` of a ``vssl extract`` folder and the
    probe's sidecar; stops on a folder without log-variances (not a VSSL extraction)."""
    test, train = np.load(features / "test.npz"), np.load(features / "train.npz")
    if "logvar" not in test.files:
        raise SystemExit(f"{features}: no logvar in test.npz (not a VSSL extraction)")
    return (test, train, *read_sidecar(sidecar))


def scored(features: Path, sidecar: Path, wrong: np.ndarray, scores: dict) -> dict:
    """One run's record: its inputs, error rate and each score's error AUROC."""
    return {
        "features": str(features),
        "sidecar": str(sidecar),
        "n": int(wrong.size),
        "error_rate": float(wrong.mean()),
        "auroc": {k: auroc(v, wrong) for k, v in scores.items()},
    }


def score_run(features: Path, sidecar: Path) -> dict:
    test, train, index, wrong = load_run(features, sidecar)
    scores = summaries(test["logvar"][index], train["logvar"], test["mu"][index])
    return scored(features, sidecar, wrong, scores)


def report(runs: list[dict], label: str, out: str | None) -> None:
    """Print each score's AUROC per run with its mean and sd as a Markdown table; with ``out``
    also write ``{"runs", "summary"}`` there as JSON."""
    head = " | ".join(f"run {k}" for k in range(len(runs)))
    print(f"| {label} | {head} | mean ± sd |")
    print("|---|" + "---:|" * (len(runs) + 1))
    summary = {}
    for name in runs[0]["auroc"]:
        vals = np.array([r["auroc"][name] for r in runs])
        sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        summary[name] = {"mean": float(vals.mean()), "sd": sd}
        cells = " | ".join(f"{v:.3f}" for v in vals)
        print(f"| {name} | {cells} | {vals.mean():.3f} ± {sd:.3f} |")
    if out:
        from vssl.io import write_json

        write_json(Path(out), {"runs": runs, "summary": summary})


def pairs_parser(doc: str) -> argparse.ArgumentParser:
    """The command line these scripts share: FEATURES_DIR SIDECAR_CSV pairs and ``--out``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("pairs", nargs="+", help="FEATURES_DIR SIDECAR_CSV, repeated")
    p.add_argument("--out", help="write the results as JSON here")
    return p


def parse_pairs(
    p: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, list[tuple[Path, Path]]]:
    """(the parsed arguments, the (features, sidecar) pairs); an odd count is a usage error."""
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error("give the feature folders and sidecars in pairs")
    pairs = zip(args.pairs[::2], args.pairs[1::2], strict=True)
    return args, [(Path(f), Path(s)) for f, s in pairs]


def main(argv: list[str] | None = None) -> int:
    args, pairs = parse_pairs(pairs_parser(__doc__), argv)
    report([score_run(f, s) for f, s in pairs], "summary", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
