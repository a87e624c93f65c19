"""Is it how the variance is used? The posterior pushed through the training set's clusters.

The reported score summarises VSSL's posterior ``q(z|x) = N(mu, diag sigma^2)`` by one number,
its mean variance. A Bayesian reading would instead ask how uncertain the posterior leaves the
image's place among the training images: draw ``z ~ q(z|x)``, find each draw's nearest of K
label-free clusters (k-means on the training images' mean directions) and score the image by
the entropy of those assignments. An image whose posterior straddles two clusters would score
high; that could rank errors where two classes meet, which the variance alone does not
(docs/benchmarks.md, "What VSSL's variance knows").

Per held-out image, against the probe's errors (the sidecar that ``vssl probe`` writes):

* ``mean variance (reported)``: the pipeline's score;
* ``-similarity to 20 nearest training means``: label-free geometry, no variance;
* for each K: ``k-means margin`` (minus the gap between the two nearest centroids' cosine
  similarities: geometry, no variance), ``assignment entropy, own variance`` (the draws) and
  ``assignment entropy, shared variance`` (the same with every image given the mean variance of
  all: what the geometry and noise alone give; the per-image variance adds information only
  where "own" beats it).

The draws are taken where the likelihood reads the variance: around the mean's direction on the
sphere of radius sqrt(d) (``--scale sphere``), ``u = sqrt(d) mu / |mu| + sigma * eps``.
``--scale raw`` draws around ``mu`` itself, as training does (docs/method.md, choice 6); the
script prints how far the draws turn the direction at each scale.

    python benchmarks/posterior_propagation.py FEATURES SIDECAR [FEATURES SIDECAR ...] \\
        [--samples 32] [--clusters 10 30 100] [--scale sphere|raw] [--out J]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from variance_aggregations import (  # noqa: E402
    density,
    load_run,
    pairs_parser,
    parse_pairs,
    report,
    scored,
    unit,
)

NEIGHBOURS = 20


def centroids(train_dirs: np.ndarray, k: int, seed: int) -> np.ndarray:
    """K unit centroids of the training directions (scikit-learn's k-means, renormalised)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(train_dirs)
    return unit(km.cluster_centers_)


def draws(
    mu: np.ndarray, logvar: np.ndarray, samples: int, scale: str, rng: np.random.Generator
) -> np.ndarray:
    """(samples, N, d) unit directions of ``z ~ N(base, diag exp(logvar))``; ``base`` is
    ``sqrt(d) mu / |mu|`` (``scale="sphere"``) or ``mu`` (``"raw"``)."""
    base = np.sqrt(mu.shape[1]) * unit(mu) if scale == "sphere" else mu
    eps = rng.standard_normal((samples, *mu.shape))
    return unit(base + np.exp(0.5 * logvar) * eps)


def assignment_entropy(dirs: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """(N,) entropy (nats) of the nearest-centroid assignments of each image's draws."""
    s, n, _ = dirs.shape
    nearest = (dirs @ cents.T).argmax(-1)  # (S, N)
    counts = np.zeros((n, len(cents)))
    np.add.at(counts, (np.broadcast_to(np.arange(n), (s, n)), nearest), 1.0)
    p = counts / s
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)


def scores(
    mu: np.ndarray,
    logvar: np.ndarray,
    train_mu: np.ndarray,
    clusters: list[int],
    samples: int,
    scale: str,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], float]:
    """Per-image scores (larger = less certain) and the median angle (degrees) between an
    image's draws and its mean direction."""
    mu, logvar = mu.astype(np.float64), logvar.astype(np.float64)
    train_dirs, dirs0 = unit(train_mu.astype(np.float64)), unit(mu)
    out = {
        "mean variance (reported)": np.exp(logvar).mean(1),
        f"-similarity to {NEIGHBOURS} nearest training means": -density(mu, train_mu, NEIGHBOURS),
    }
    shared = np.full_like(logvar, np.log(np.exp(logvar).mean()))
    own = draws(mu, logvar, samples, scale, np.random.default_rng(seed))
    same = draws(mu, shared, samples, scale, np.random.default_rng(seed))
    angle = float(np.degrees(np.median(np.arccos(np.clip((own * dirs0).sum(-1), -1, 1)))))
    for k in clusters:
        cents = centroids(train_dirs, k, seed)
        near = np.sort(dirs0 @ cents.T, 1)
        out[f"k={k}: -k-means margin"] = -(near[:, -1] - near[:, -2])
        out[f"k={k}: assignment entropy, own variance"] = assignment_entropy(own, cents)
        out[f"k={k}: assignment entropy, shared variance"] = assignment_entropy(same, cents)
    return out, angle


def score_run(
    features: Path, sidecar: Path, clusters: list[int], samples: int, scale: str, seed: int
) -> dict:
    test, train, index, wrong = load_run(features, sidecar)
    s, angle = scores(
        test["mu"][index], test["logvar"][index], train["mu"], clusters, samples, scale, seed
    )
    run = scored(features, sidecar, wrong, s)
    return {**run, "scale": scale, "samples": samples, "median_draw_angle_deg": angle}


def main(argv: list[str] | None = None) -> int:
    p = pairs_parser(__doc__)
    p.add_argument("--samples", type=int, default=32, help="draws per image")
    p.add_argument("--clusters", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--scale", choices=("sphere", "raw"), default="sphere")
    p.add_argument("--seed", type=int, default=0)
    args, pairs = parse_pairs(p, argv)
    runs = [score_run(f, s, args.clusters, args.samples, args.scale, args.seed) for f, s in pairs]
    angles = ", ".join(f"{r['median_draw_angle_deg']:.1f}" for r in runs)
    print(f"draws at scale {args.scale!r}: median angle to the mean direction {angles} degrees")
    report(runs, "score", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
