"""Fixed, seeded, stratified index selection (hold-out splits and subsets).

Both helpers return *sorted* index arrays so the order of the underlying data is preserved and the
result depends only on (labels, size, seed): the same call on any machine gives the same images.
Stratification keeps every class's share: ``n_c ~= n * N_c / N`` (scikit-learn's
``train_test_split(stratify=...)``, which rounds class counts and breaks ties by the seed).
"""

from __future__ import annotations

import numpy as np

from vssl.config import ConfigError

# Seed of the `data.train_subset` / `data.test_subset` selections: fixed, so every method, seed and
# stage of one profile sees the same images.
SUBSET_SEED = 0


class DataError(ConfigError):
    """A dataset that is missing, malformed or unknown; the message says where files must lie.

    A subclass of ``ConfigError`` so every CLI stage reports it cleanly (exit status 2).
    """


def stratified_split(
    labels: np.ndarray, test_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(N)`` into (train, test) index arrays with ``len(test) == test_size``,
    stratified by ``labels`` and seeded; both sorted."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = len(labels)
    if not 0 < test_size < n:
        raise DataError(f"hold-out size {test_size} must lie in [1, {n - 1}] for {n} samples")
    try:
        train, test = train_test_split(
            np.arange(n), test_size=test_size, stratify=labels, random_state=seed
        )
    except ValueError as e:  # too few samples of a class for a stratified split
        raise DataError(f"cannot make a stratified hold-out of {test_size} of {n}: {e}") from None
    return np.sort(train), np.sort(test)


def stratified_subset(labels: np.ndarray, size: int | None, seed: int = SUBSET_SEED) -> np.ndarray:
    """Sorted indices of a stratified subset of ``size`` samples (all of them when ``size`` is
    None or N); a ``size`` above N is a ``DataError``, not silently the N there are."""
    labels = np.asarray(labels)
    n = len(labels)
    if size is not None and size > n:
        raise DataError(f"a subset of {size} image(s) exceeds the {n} there are")
    if size is None or size == n:
        return np.arange(n)
    classes = len(np.unique(labels))
    if size < classes:
        raise DataError(
            f"a stratified subset of {size} image(s) cannot hold one of each of the {classes} "
            f"classes (data.train_subset / data.test_subset must be at least {classes})"
        )
    return stratified_split(labels, n - size, seed)[0]
