"""benchmarks/latent_probe_auroc.py: the error AUROCs of probes on the features and the latent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("latent_probe_auroc.py", "latent_probe_auroc_bench")


def _write(folder: Path, informative: bool, seed: int = 0) -> None:
    """Four well-separated classes; a third of the test images carry far more noise. The
    variance is high exactly on those (informative) or random (not); the latent mean is the
    features rotated, so every probe input sees the same geometry."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16)) * 3
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]

    def split(n: int, noisy_share: float) -> dict:
        y = rng.integers(0, 4, n)
        noisy = rng.random(n) < noisy_share
        x = centres[y] + rng.normal(size=(n, 16)) * np.where(noisy, 6.0, 0.5)[:, None]
        var = np.where(noisy, 2.0, 0.2) if informative else rng.uniform(0.2, 2.0, n)
        logvar = np.log(np.repeat(var[:, None], 8, axis=1))
        return {"features": x.astype(np.float32), "labels": y, "logvar": logvar.astype(np.float32),
                "mu": (x @ rotation)[:, :8].astype(np.float32) + 5.0}  # fmt: skip

    folder.mkdir(parents=True)
    np.savez(folder / "train.npz", **split(400, 0.0))
    np.savez(folder / "test.npz", **split(300, 1 / 3))


def test_a_variance_that_marks_the_noisy_images_ranks_every_probes_errors(bench, tmp_path):
    _write(tmp_path / "vssl", informative=True)
    out = tmp_path / "r.json"
    bench.main([str(tmp_path / "vssl"), "--profile", "smoke", "--out", str(out)])
    probes = json.loads(out.read_text())["probes"]
    assert set(probes) == {"features", "mu", "mu direction"}
    for r in probes.values():
        assert 60 < r["top1"] < 100  # the noisy third is often wrong, the rest right
        assert r["auroc"]["posterior variance"] > 0.8
    assert not list(tmp_path.glob("*.tmp"))


def test_a_random_variance_ranks_nothing(bench, tmp_path):
    _write(tmp_path / "vssl", informative=False)
    result = bench.evaluate(tmp_path / "vssl", bench.load_params(ROOT / "params.yaml").probe.linear)
    for r in result.values():
        assert abs(r["auroc"]["posterior variance"] - 0.5) < 0.12
        assert r["auroc"]["probe's own confidence (knows the classes)"] > 0.6  # rankable errors


def test_a_folder_without_variances_is_refused(bench, tmp_path):
    folder = tmp_path / "byol"
    folder.mkdir()
    for split in ("train", "test"):
        np.savez(folder / f"{split}.npz", features=np.zeros((8, 4)), labels=np.arange(8) % 2)
    with pytest.raises(SystemExit, match="not a VSSL extraction"):
        bench.main([str(folder)])
