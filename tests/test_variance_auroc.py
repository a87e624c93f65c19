"""benchmarks/variance_auroc.py: the information-loss test (centre crops) on a real checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark
from test_extract import TINY, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("variance_auroc.py", "variance_auroc_bench")


def test_full_area_crop_is_the_evaluation_transform(bench) -> None:
    from vssl.augment import eval_transform, get_preset

    recipe = get_preset("cifar")
    tf = eval_transform(recipe, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(bench.centre_crop_views(x, 1.0, tf, 32), tf(x))
    small = bench.centre_crop_views(x, 0.25, tf, 32)
    assert small.shape == (4, 3, 32, 32)
    # the centre 16x16 block, upsampled: its mean matches the block's, not the whole image's
    block = tf(x)[..., 8:24, 8:24]
    assert torch.allclose(small.mean((2, 3)), block.mean((2, 3)), atol=0.05)


def test_information_loss_on_a_checkpoint(bench, smoke_params, tmp_path: Path) -> None:
    from vssl.config import load_params

    params = load_params(ROOT / "params.yaml", profile="smoke", overrides=TINY)
    ckpt = make_checkpoint(tmp_path / "vssl.pt", params, "vssl")
    res = bench.information_loss(bench.load_trained(ckpt), [1.0, 0.3], seed=0)
    levels = {row["area"]: row for row in res["levels"]}
    assert set(levels) == {1.0, 0.3}
    # area 1 is the clean test set, classified by the same probe
    assert levels[1.0]["probe_top1"] == pytest.approx(res["clean_probe_top1"], abs=1e-6)
    for row in res["levels"]:
        assert 0 <= row["probe_top1"] <= 100
        assert row["teacher_variance"] > 0 and row["student_variance"] > 0
    # the reference on the clean images scores the errors of that same probe
    clean = res["clean"]
    assert clean["probe_error_rate"] == pytest.approx(1 - res["clean_probe_top1"] / 100, abs=1e-6)
    assert all(0 <= v <= 1 for v in clean["auroc"].values())
    mixed = res["mixed"]
    assert 0 < mixed["probe_error_rate"] < 1
    for value in [*mixed["auroc"].values(), mixed["spearman(teacher variance, area)"]]:
        assert np.isfinite(value)
    with pytest.raises(SystemExit):
        bench.main([str(ckpt), str(tmp_path / "missing.csv"), "--crop-levels", "1.5"])


def test_anatomy_separates_class_effects_from_within_class_ranking(bench) -> None:
    import pandas as pd

    # class 0: low variance, always right; class 1: variance ranks its errors perfectly
    side = pd.DataFrame(
        {
            "label": [0] * 10 + [1] * 10,
            "correct": [1] * 10 + [1] * 5 + [0] * 5,
            "mean_variance": [0.1] * 10 + [0.5 + 0.01 * i for i in range(10)],
        }
    )
    res = bench.anatomy(side, n_bins=4)
    assert res["error_rate_by_variance_bin"] == [0.0, 0.0, 0.0, 100.0]
    assert res["within_class_auroc_mean"] == pytest.approx(1.0)  # class 0 has no errors: skipped
    assert res["lowest_bin_label_counts"] == {0: 5}
    # one variance for all of class 1: the class effect stays, the within-class ranking goes
    side.loc[10:, "mean_variance"] = 0.5
    assert bench.anatomy(side, n_bins=4)["within_class_auroc_mean"] == pytest.approx(0.5)


def test_scores_read_the_posterior_of_the_clean_image(bench, smoke_params, tmp_path: Path) -> None:
    """A sidecar whose errors are exactly the images with the highest mean log-variance gets
    an entropy AUROC of 1; every score is an AUROC in [0, 1]."""
    import pandas as pd

    from vssl.config import load_params
    from vssl.data import load_tensors

    params = load_params(ROOT / "params.yaml", profile="smoke", overrides=TINY)
    ckpt = make_checkpoint(tmp_path / "vssl.pt", params, "vssl")
    trained = bench.load_trained(ckpt)
    x, y = load_tensors(trained.dataset, "test", trained.params)
    with torch.no_grad():
        entropy = trained.model.gaussian(trained.tf(x))[1].mean(1).numpy()
    wrong = entropy > np.median(entropy)
    side = tmp_path / "side.csv"
    pd.DataFrame(
        {"label": y.numpy(), "correct": (~wrong).astype(int), "mean_variance": 1.0}
    ).to_csv(side, index=False)
    res = bench.scores(trained, side, draws=1, seed=0)
    assert res["auroc"]["student entropy (clean)"] == pytest.approx(1.0)
    assert res["probe_error_rate"] == pytest.approx(wrong.mean())
    assert all(0 <= v <= 1 for v in res["auroc"].values())
    # the kNN-20 block: that probe's error rate, as `vssl probe` computes kNN-20 top-1
    from vssl.eval.knn import knn_accuracy

    xt, yt = load_tensors(trained.dataset, "train", trained.params)
    with torch.no_grad():
        bank, feats = trained.model.backbone(trained.tf(xt)), trained.model.backbone(trained.tf(x))
    top1 = knn_accuracy(bank, yt, feats, y, k=20, temperature=0.07, topk=(1,))[1]
    assert res["knn20"]["error_rate"] == pytest.approx(1 - top1 / 100)
    assert all(0 <= v <= 1 for v in res["knn20"]["auroc"].values())


@pytest.mark.parametrize(
    "score", ["KL(posterior, prior) (clean)", "-similarity to 20 nearest train images"]
)
def test_the_terms_and_the_density_score_rank_what_they_say(
    bench, smoke_params, tmp_path: Path, score: str
) -> None:
    """Errors placed exactly on the images with the largest VSSL KL between the student's and
    the teacher's Gaussians of the same clean image (or the sparsest neighbourhoods among the
    training features) get an AUROC of 1 from that score: the sign and the inputs are right."""
    import pandas as pd
    import torch.nn.functional as F

    from vssl.config import load_params
    from vssl.data import load_tensors
    from vssl.methods.vssl import Gaussian, vssl_pair_terms

    params = load_params(ROOT / "params.yaml", profile="smoke", overrides=TINY)
    trained = bench.load_trained(make_checkpoint(tmp_path / "vssl.pt", params, "vssl"))
    m, tf = trained.model, trained.tf
    x, y = load_tensors(trained.dataset, "test", trained.params)
    xt, _ = load_tensors(trained.dataset, "train", trained.params)
    with torch.no_grad():
        if score.startswith("KL"):
            q, p = Gaussian(*m.gaussian(tf(x))), Gaussian(*m.prior(tf(x)))
            value = vssl_pair_terms(q, p, **m.terms)[1].numpy()
        else:
            f, bank = F.normalize(m.backbone(tf(x)), dim=1), F.normalize(m.backbone(tf(xt)), dim=1)
            value = -(f @ bank.T).topk(20, dim=1).values.mean(1).numpy()
    wrong = value > np.median(value)
    side = tmp_path / "side.csv"
    pd.DataFrame(
        {"label": y.numpy(), "correct": (~wrong).astype(int), "mean_variance": 1.0}
    ).to_csv(side, index=False)
    assert bench.scores(trained, side, draws=1, seed=0)["auroc"][score] == pytest.approx(1.0)
