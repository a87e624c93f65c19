"""Is VSSL's variance worth more than what any method's features give for free?

VSSL's reported uncertainty is the posterior's mean variance. Every self-supervised method, BYOL
included, offers label-free scores from its frozen features alone: minus the feature norm and
minus the mean cosine similarity to the 20 nearest training features (a density). This script
scores a run's linear-probe errors (the sidecar ``vssl probe`` writes beside its JSON) by those
scores, read from the ``vssl extract`` folder, and, for a VSSL run, by the posterior's mean
variance as the pipeline computes it. Comparing BYOL's best free score on BYOL's errors with
VSSL's variance on VSSL's errors says whether the variance is more than a by-product every method
has. 0.5: no information. All runs of one call must come from one method.

    python benchmarks/feature_uncertainty.py FEATURES SIDECAR [FEATURES SIDECAR ...] [--out J]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from variance_aggregations import (  # noqa: E402
    density,
    pairs_parser,
    parse_pairs,
    read_sidecar,
    report,
    scored,
)

from vssl.eval.uncertainty import mean_variance  # noqa: E402

NEIGHBOURS = 20


def free_scores(features: Path, index: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    """(method, per-image scores, larger = less certain) of the test images ``index``."""
    meta = json.loads((features / "meta.json").read_text())
    test, train = np.load(features / "test.npz"), np.load(features / "train.npz")
    f = test["features"][index]
    scores = {
        "-feature norm": -np.linalg.norm(f.astype(np.float64), axis=1),
        f"-similarity to {NEIGHBOURS} nearest train images": -density(
            f, train["features"], NEIGHBOURS
        ),
    }
    if "logvar" in test.files:
        scores["posterior mean variance (reported)"] = mean_variance(test["logvar"][index])
    return str(meta.get("method", "?")), scores


def main(argv: list[str] | None = None) -> int:
    p = pairs_parser(__doc__)
    args, pairs = parse_pairs(p, argv)
    runs, methods = [], set()
    for f, s in pairs:
        index, wrong = read_sidecar(s)
        method, scores = free_scores(f, index)
        methods.add(method)
        runs.append({"method": method, **scored(f, s, wrong, scores)})
    if len(methods) > 1:
        p.error(f"runs of several methods ({', '.join(sorted(methods))}); one call per method")
    report(runs, f"score ({methods.pop()})", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
