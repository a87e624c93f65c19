"""Frozen-feature probes on synthetic features whose answer is known, against scikit-learn."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vssl.config import ProbeCfg
from vssl.eval.features import (
    FeatureError,
    FeatureSet,
    load_feature_dir,
    load_features,
    save_features,
    validate_arrays,
)
from vssl.eval.knn import knn_accuracy, knn_classify, knn_classify_multi, knn_predict
from vssl.eval.linear import fit_logistic_regression, linear_probe, validation_split
from vssl.eval.metrics import class_rank, topk_accuracy
from vssl.eval.probe import run_probes, write_report
from vssl.eval.uncertainty import auroc, error_auroc, mean_variance, sidecar_path

ROOT = Path(__file__).resolve().parents[1]
C = 10


def blobs(n: int, dim: int, signal: float, seed: int, centres_seed: int = 0):
    """Gaussian noise around class centres shared by every call with the same centres_seed."""
    centres = np.random.default_rng(centres_seed).normal(size=(C, dim)) * signal
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    return (rng.normal(size=(n, dim)) + centres[y]).astype(np.float32), y.astype(np.int64)


def one_hot_plus_noise(n: int, seed: int, noise: float = 0.1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    x = np.eye(C, dtype=np.float32)[y] + noise * rng.normal(size=(n, C)).astype(np.float32)
    # Extra pure-noise dimensions: the probe must find the informative ones.
    x = np.concatenate([x, noise * rng.normal(size=(n, 6)).astype(np.float32)], axis=1)
    return x, y.astype(np.int64)


def small_cfg(**linear) -> ProbeCfg:
    return ProbeCfg.model_validate(
        {"linear": {"weight_decays": [0.0, 1e-3], "max_iter": 100, "lr": 1.0, **linear}}
    )


# ------------------------------------------------------------------ feature files


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("labels"), "missing array(s) labels"),
        (lambda a: a.update(labels=a["labels"][:-1]), "mismatched lengths"),
        (lambda a: a["features"].__setitem__((3, 1), np.nan), "non-finite"),
        (lambda a: a["logvar"].__setitem__((0, 0), np.inf), "`logvar` has 1 non-finite"),
        (lambda a: a.pop("logvar"), "`mu` present without its partner"),
        (lambda a: a.update(features=a["features"][:, 0]), "non-empty (N, D)"),
        (lambda a: a.update(labels=a["labels"].astype(np.float32)), "must be integers"),
        (lambda a: a["labels"].__setitem__(0, -1), "must be >= 0"),
        (lambda a: a.update(mu=a["mu"][:-1]), "`mu` must be floating (N=8"),
    ],
)
def test_malformed_feature_files_give_clear_errors(tmp_path: Path, change, message: str) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "features": rng.normal(size=(8, 4)).astype(np.float32),
        "labels": np.arange(8) % 3,
        "mu": np.zeros((8, 2), np.float32),
        "logvar": np.zeros((8, 2), np.float32),
    }
    change(arrays)
    path = tmp_path / "train.npz"
    np.savez(path, **arrays)
    with pytest.raises(FeatureError) as e:
        load_features(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "train.npz"
    bad.write_bytes(b"definitely not a zip archive")
    with pytest.raises(FeatureError, match="not a readable .npz"):
        load_features(bad)
    with pytest.raises(FeatureError, match="feature file not found"):
        load_features(tmp_path / "nope.npz")
    with pytest.raises(FeatureError, match="feature folder not found"):
        load_feature_dir(tmp_path / "nowhere")


def test_roundtrip_and_folder_consistency(tmp_path: Path) -> None:
    x, y = blobs(20, 6, 1.0, seed=1)
    meta = {"dataset": "d", "method": "vssl", "seed": 3, "extraction_id": "a"}
    g = np.zeros((20, 2), np.float32)
    save_features(tmp_path / "train.npz", FeatureSet(x, y, g, g, meta))
    save_features(tmp_path / "test.npz", FeatureSet(x[:5], y[:5], g[:5], g[:5], meta))
    train, test = load_feature_dir(tmp_path)
    np.testing.assert_array_equal(train.features, x)
    assert train.labels.dtype == np.int64 and train.meta == meta and test.n == 5
    assert not list(tmp_path.glob(".*")), "atomic writes left temporary files"

    save_features(
        tmp_path / "test.npz",
        FeatureSet(x[:5], y[:5], g[:5], g[:5], {**meta, "extraction_id": "b"}),
    )
    with pytest.raises(FeatureError, match="different extractions"):
        load_feature_dir(tmp_path)
    save_features(tmp_path / "test.npz", FeatureSet(x[:5, :4], y[:5], g[:5], g[:5], meta))
    with pytest.raises(FeatureError, match="different feature dimensions"):
        load_feature_dir(tmp_path)
    save_features(tmp_path / "test.npz", FeatureSet(x[:5], y[:5], meta=meta))
    with pytest.raises(FeatureError, match="mu/logvar"):
        load_feature_dir(tmp_path)


def test_validate_casts_dtypes() -> None:
    fs = validate_arrays({"features": np.ones((3, 2)), "labels": np.array([0, 1, 2], np.int32)})
    assert fs.features.dtype == np.float32 and fs.labels.dtype == np.int64


# ------------------------------------------------------------------ metrics


def test_class_rank_breaks_ties_like_argmax() -> None:
    scores = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 1, 2, 1])
    assert class_rank(scores, labels).tolist() == [0, 1, 1, 2]
    assert topk_accuracy(scores, labels, (1, 2, 3)) == {1: 25.0, 2: 75.0, 3: 100.0}
    top1 = (scores.argmax(1) == labels).double().mean().item() * 100
    assert topk_accuracy(scores, labels, (1,))[1] == top1


# ------------------------------------------------------------------ kNN


def test_knn_known_answers() -> None:
    x, y = one_hot_plus_noise(400, seed=0)
    xt, yt = one_hot_plus_noise(300, seed=1)
    acc = knn_accuracy(x, y, xt, yt, k=20, temperature=0.07, num_classes=C)
    assert acc[1] > 99.0 and acc[5] == 100.0

    rng = np.random.default_rng(2)
    noise, noise_t = rng.normal(size=(2000, 16)), rng.normal(size=(1000, 16))
    acc = knn_accuracy(noise, rng.integers(0, C, 2000), noise_t, rng.integers(0, C, 1000), k=20)
    assert 5.0 < acc[1] < 15.0  # chance is 10%; binomial sd ~1%
    assert 40.0 < acc[5] < 60.0  # chance is 50%


def test_knn_agrees_with_sklearn() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    x, y = blobs(3000, 32, 0.35, seed=1)
    xt, yt = blobs(1000, 32, 0.35, seed=2)
    ref = KNeighborsClassifier(n_neighbors=20, metric="cosine", weights="uniform").fit(x, y)
    ref_pred = ref.predict(xt)
    ref_acc = 100 * (ref_pred == yt).mean()
    assert 30 < ref_acc < 90, "the comparison needs features that are neither trivial nor noise"

    uniform = knn_predict(x, y, xt, k=20, num_classes=C, weighting="uniform").numpy()
    assert abs(100 * (uniform == yt).mean() - ref_acc) <= 1.0
    assert (uniform == ref_pred).mean() >= 0.99  # only float ties may differ

    # Temperature votes exp(s / T) = exp((1 - d) / T) are proportional to exp(-d / T) for the
    # cosine distance d = 1 - s: the same rule as sklearn with a callable weight.
    ref_t = KNeighborsClassifier(
        n_neighbors=20, metric="cosine", weights=lambda d: np.exp(-d / 0.07)
    )
    ref_t_pred = ref_t.fit(x, y).predict(xt)
    weighted = knn_predict(x, y, xt, k=20, temperature=0.07, num_classes=C).numpy()
    assert abs(100 * (weighted == yt).mean() - 100 * (ref_t_pred == yt).mean()) <= 1.0
    assert (weighted == ref_t_pred).mean() >= 0.99


def test_knn_invariant_to_sample_order_and_chunking() -> None:
    x, y = blobs(500, 16, 0.5, seed=3)
    xt, _ = blobs(97, 16, 0.5, seed=4)
    base = knn_classify(x, y, xt, k=20, num_classes=C)
    perm = np.random.default_rng(0).permutation(500)
    torch.testing.assert_close(knn_classify(x[perm], y[perm], xt, k=20, num_classes=C), base)
    tperm = np.random.default_rng(1).permutation(97)
    torch.testing.assert_close(knn_classify(x, y, xt[tperm], k=20, num_classes=C), base[tperm])
    torch.testing.assert_close(knn_classify(x, y, xt, k=20, num_classes=C, chunk_size=7), base)
    multi = knn_classify_multi(x, y, xt, [5, 20], num_classes=C)
    torch.testing.assert_close(multi[20], base)
    assert multi[5].shape == (97, C)


def test_knn_weights_and_votes() -> None:
    # Two train points: class 0 along e0, class 1 at 45 degrees; the query sits on e0.
    train = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scores = knn_classify(
        train, torch.tensor([0, 1]), torch.tensor([[2.0, 0.0]]), k=2, temperature=0.5, num_classes=3
    )
    expected = torch.tensor([[1.0, np.exp((np.sqrt(0.5) - 1.0) / 0.5), 0.0]])
    torch.testing.assert_close(scores, expected.float())


def test_knn_clamps_k_with_a_warning() -> None:
    x, y = blobs(30, 8, 1.0, seed=5)
    xt, _ = blobs(10, 8, 1.0, seed=6)
    with pytest.warns(UserWarning, match="k=50 exceeds the 30 train samples"):
        clamped = knn_classify(x, y, xt, k=50, num_classes=C)
    torch.testing.assert_close(clamped, knn_classify(x, y, xt, k=30, num_classes=C))


# ------------------------------------------------------------------ linear probe


def test_validation_split() -> None:
    y = np.repeat(np.arange(4), [50, 30, 20, 1])
    fit, val = validation_split(y, 0.1, seed=0)
    assert np.intersect1d(fit, val).size == 0 and np.union1d(fit, val).size == y.size
    assert np.bincount(y[val], minlength=4).tolist() == [5, 3, 2, 0]  # singleton stays in fit
    np.testing.assert_array_equal(validation_split(y, 0.1, seed=0)[1], val)
    assert not np.array_equal(validation_split(y, 0.1, seed=1)[1], val)
    # 100 classes of 2: every class rounds to 0 in val; val takes one image of 20 classes.
    many = np.repeat(np.arange(100), 2)
    fit, val = validation_split(many, 0.1, seed=0)
    assert val.size == 20 and np.bincount(many[val], minlength=100).max() == 1
    assert np.bincount(many[fit], minlength=100).min() == 1  # every class stays in fit
    with pytest.raises(ValueError, match="no class has two samples"):
        validation_split(np.arange(10), 0.1, seed=0)


def test_linear_known_answers() -> None:
    x, y = one_hot_plus_noise(500, seed=0)
    xt, yt = one_hot_plus_noise(300, seed=1)
    res = linear_probe(x, y, xt, yt, C, weight_decays=[0.0, 1e-3], lr=1.0)
    assert res.top1 > 99.0 and res.top5 == 100.0

    rng = np.random.default_rng(2)
    res = linear_probe(
        rng.normal(size=(2000, 16)), rng.integers(0, C, 2000),
        rng.normal(size=(1000, 16)), rng.integers(0, C, 1000), C, lr=1.0,
    )  # fmt: skip
    assert 5.0 < res.top1 < 15.0
    assert set(res.val_top1) == {0.0, 1e-6, 1e-5, 1e-4, 1e-3}


def test_linear_probe_keeps_the_weight_decay_that_validates_best() -> None:
    """The grid's winner on the validation split is refitted and reported: here a decay so
    strong that the probe falls to chance against none at all."""
    x, y = blobs(600, 8, signal=1.0, seed=0)
    xt, yt = blobs(300, 8, signal=1.0, seed=1)
    res = linear_probe(x, y, xt, yt, C, weight_decays=[0.0, 10.0], lr=1.0, max_iter=100)
    assert res.val_top1[0.0] > res.val_top1[10.0] + 20
    assert res.weight_decay == 0.0
    strong = linear_probe(x, y, xt, yt, C, weight_decays=[10.0], lr=1.0, max_iter=100)
    assert res.top1 > strong.top1 + 20
    # Ties go to the larger decay (the simpler model).
    tie = linear_probe(x, y, xt, yt, C, weight_decays=[0.0, 1e-9], lr=1.0, max_iter=100)
    assert tie.val_top1[0.0] == tie.val_top1[1e-9] and tie.weight_decay == 1e-9


def test_linear_agrees_with_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(3000, 32, 0.25, seed=1)
    xt, yt = blobs(1000, 32, 0.25, seed=2)
    wd = 1e-3
    model, _ = fit_logistic_regression(x, y, C, wd, max_iter=200, lr=1.0)
    pred = model.logits(xt).argmax(1).numpy()

    scaler = StandardScaler().fit(x)
    # Same objective: sklearn minimises C * sum_i CE_i + ||W||^2 / 2, i.e. C = 1 / (wd * n).
    ref = LogisticRegression(C=1.0 / (wd * len(x)), max_iter=2000, tol=1e-8)
    ref_pred = ref.fit(scaler.transform(x), y).predict(scaler.transform(xt))
    ref_acc = 100 * (ref_pred == yt).mean()
    assert 30 < ref_acc < 90
    assert abs(100 * (pred == yt).mean() - ref_acc) <= 1.0
    assert (pred == ref_pred).mean() >= 0.99
    np.testing.assert_allclose(
        model.weight.numpy(), ref.coef_ / model.std.numpy() * scaler.scale_, atol=2e-3
    )


def test_linear_invariant_to_order_and_deterministic() -> None:
    x, y = blobs(1000, 16, 0.3, seed=1)
    xt, yt = blobs(400, 16, 0.3, seed=2)
    kw = dict(weight_decays=[1e-3], lr=1.0)  # one decay: the val split cannot change the choice
    base = linear_probe(x, y, xt, yt, C, **kw)
    again = linear_probe(x, y, xt, yt, C, **kw)
    assert torch.equal(base.test_logits, again.test_logits)

    p, q = np.random.default_rng(0).permutation(1000), np.random.default_rng(1).permutation(400)
    perm = linear_probe(x[p], y[p], xt[q], yt[q], C, **kw)
    assert abs(perm.top1 - base.top1) <= 0.25  # at most one test sample of 400
    assert (perm.predictions == base.predictions[q]).mean() >= 0.995


def test_linear_warns_when_not_converged() -> None:
    x, y = blobs(300, 8, 1.0, seed=1)
    with pytest.warns(UserWarning, match="stopped at its cap"):
        _, info = fit_logistic_regression(x, y, C, 1e-3, max_iter=2, lr=1.0)
    assert not info.converged and info.iterations == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = fit_logistic_regression(x, y, C, 1e-3, max_iter=500, lr=1.0)
    assert info.converged and info.iterations < 500


def test_linear_reparametrize_is_exact() -> None:
    x, y = blobs(300, 8, 1.0, seed=1)
    model, _ = fit_logistic_regression(x, y, C, 1e-3, lr=1.0)
    w, b = model.reparametrize(torch.ones(8) * 0.5, torch.ones(8) * 2.0)
    xt = torch.from_numpy(blobs(50, 8, 1.0, seed=2)[0])
    other = torch.nn.functional.linear((xt - 0.5) / 2.0, w, b)
    torch.testing.assert_close(other, model.logits(xt), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ uncertainty


def test_auroc_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for scores in (rng.normal(size=500), rng.integers(0, 5, 500).astype(float)):  # with ties
        pos = rng.random(500) < 0.3
        assert auroc(scores, pos) == pytest.approx(roc_auc_score(pos, scores), abs=1e-12)
    assert auroc(np.array([1.0, 2, 3]), np.array([False, False, True])) == 1.0
    with pytest.warns(UserWarning, match="AUROC undefined"):
        assert np.isnan(auroc(np.ones(3), np.zeros(3, bool)))


def test_mean_variance() -> None:
    logvar = np.log(np.array([[1.0, 3.0], [0.5, 0.5]]))
    np.testing.assert_allclose(mean_variance(logvar), [2.0, 0.5])


# ------------------------------------------------------------------ whole probe


def vssl_like(n: int, seed: int):
    """Features whose per-sample noise scale is known: logvar = log(scale^2) tracks difficulty."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    scale = rng.uniform(0.05, 1.0, n).astype(np.float32)
    x = np.eye(C, dtype=np.float32)[y] + scale[:, None] * rng.normal(size=(n, C)).astype(np.float32)
    logvar = np.repeat(np.log(scale**2)[:, None], 4, axis=1).astype(np.float32)
    logvar += 0.1 * rng.normal(size=logvar.shape).astype(np.float32)
    return FeatureSet(x, y.astype(np.int64), mu=x[:, :4].copy(), logvar=logvar)


def test_run_probes_vssl_report(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    train, test = vssl_like(1500, seed=0), vssl_like(600, seed=1)
    report = run_probes(train, test, small_cfg(), seed=0)
    r = report.results
    assert set(r) == {
        "linear_top1", "linear_top5", "linear_weight_decay", "knn20_top1", "knn20_top5",
        "knn200_top1", "knn200_top5", "n_train", "n_test", "feature_dim", "num_classes",
        "uncertainty_error_auroc", "uncertainty_error_auroc_knn20",
        "uncertainty_error_auroc_knn200", "uncertainty_mean_variance", "feature_norm_error_auroc",
    }  # fmt: skip
    assert (r["n_train"], r["n_test"], r["feature_dim"], r["num_classes"]) == (1500, 600, C, C)
    assert all(0 <= r[k] <= 100 for k in r if k.endswith(("top1", "top5")))
    assert 50 < r["linear_top1"] < 99, "needs both right and wrong predictions"
    correct = report.linear.predictions == test.labels
    assert r["uncertainty_error_auroc"] == pytest.approx(
        roc_auc_score(~correct, mean_variance(test.logvar))
    )
    assert r["uncertainty_error_auroc"] > 0.75  # the variance really flags the noisy samples
    # the label-free baseline every method gets: minus the feature norm, same errors
    assert r["feature_norm_error_auroc"] == pytest.approx(
        roc_auc_score(~correct, -np.linalg.norm(test.features, axis=1))
    )
    # the same variance against the kNN classifier's errors (its top-1 as knn20_top1 counts it)
    scores = knn_classify_multi(train.features, train.labels, test.features, [20], 0.07, C)[20]
    knn_correct = scores.argmax(1).numpy() == test.labels
    assert 100 * knn_correct.mean() == pytest.approx(r["knn20_top1"])
    assert r["uncertainty_error_auroc_knn20"] == pytest.approx(
        roc_auc_score(~knn_correct, mean_variance(test.logvar))
    )

    out = tmp_path / "seed0.json"
    written = write_report(report, out)
    assert written == [out, tmp_path / "seed0.uncertainty.csv"] == [out, sidecar_path(out)]
    assert json.loads(out.read_text()) == pytest.approx(r)
    rows = np.loadtxt(written[1], delimiter=",", skiprows=1)
    assert rows.shape == (600, 5)
    np.testing.assert_array_equal(rows[:, 3].astype(bool), correct)
    np.testing.assert_allclose(rows[:, 4], mean_variance(test.logvar), rtol=1e-6)
    assert error_auroc(rows[:, 4], rows[:, 3].astype(bool)) == pytest.approx(
        r["uncertainty_error_auroc"]
    )
    # With the features' metadata, the file names the run it belongs to (the table checks it).
    meta = {"dataset": "cifar10_mini", "method": "vssl", "variant": "vssl", "seed": 0, "epoch": 3}
    write_report(report, out, source=meta)
    saved = json.loads(out.read_text())
    assert saved.pop("source") == {k: v for k, v in meta.items() if k != "epoch"}
    assert saved == pytest.approx(r)


def test_run_probes_deterministic_method_has_no_uncertainty() -> None:
    x, y = one_hot_plus_noise(300, seed=0)
    xt, yt = one_hot_plus_noise(100, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k=200 is clamped on this tiny set
        report = run_probes(FeatureSet(x, y), FeatureSet(xt, yt), small_cfg(), seed=0)
    assert "uncertainty_error_auroc" not in report.results and report.variance is None
    # every method gets the label-free baseline (here the probe errs on none: undefined, null)
    linear_errs = (report.linear.predictions != yt).sum()
    auc = report.results["feature_norm_error_auroc"]
    assert (auc is None) == (linear_errs == 0)
    assert report.results["knn200_top1"] > 90


# ------------------------------------------------------------------ command line


def write_feature_dir(path: Path, meta: dict | None = None) -> None:
    train, test = vssl_like(300, seed=0), vssl_like(120, seed=1)
    for name, fs in (("train", train), ("test", test)):
        save_features(
            path / f"{name}.npz", FeatureSet(fs.features, fs.labels, fs.mu, fs.logvar, meta or {})
        )


def test_cli_probe_logs_nested_mlflow_run(tmp_path: Path, mlflow_uri: str) -> None:
    from mlflow import MlflowClient

    from vssl import tracking
    from vssl.cli import main
    from vssl.config import load_params

    params = load_params(ROOT / "params.yaml", profile="smoke")
    with tracking.start_run(
        params, stage="pretrain", dataset="toy", method="vssl", seed=3
    ) as parent:
        parent_id = parent.info.run_id
    feats = tmp_path / "features"
    write_feature_dir(
        feats,
        {
            "mlflow_run_id": parent_id,
            "dataset": "toy",
            "method": "vssl",
            "seed": 3,
            "profile": "smoke",
        },
    )
    out = tmp_path / "probes" / "seed3.json"
    argv = [
        "probe",
        "--features",
        str(feats),
        "--out",
        str(out),
        "--params",
        str(ROOT / "params.yaml"),
        "--profile",
        "smoke",
        "--set",
        "probe.knn.k=[5,50]",
    ]
    assert main(argv) == 0

    results = json.loads(out.read_text())
    assert {"knn5_top1", "knn50_top5", "uncertainty_error_auroc"} <= set(results)
    assert (out.parent / "seed3.uncertainty.csv").is_file()
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("vssl").experiment_id], "tags.stage = 'probe'"
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["mlflow.parentRunId"] == parent_id
    assert (run.data.tags["dataset"], run.data.tags["method"], run.data.tags["seed"]) == (
        "toy",
        "vssl",
        "3",
    )
    assert run.data.metrics["linear_top1"] == pytest.approx(results["linear_top1"])


def test_cli_probe_standalone_and_errors(tmp_path: Path, mlflow_uri: str, capsys) -> None:
    from vssl.cli import main

    feats = tmp_path / "f"
    write_feature_dir(feats)  # no meta: standalone MLflow run
    out = tmp_path / "r.json"
    base = ["--params", str(ROOT / "params.yaml"), "--profile", "smoke", "--set", "probe.knn.k=[5]"]
    assert main(["probe", "--features", str(feats), "--out", str(out), *base]) == 0
    assert json.loads(out.read_text())["n_test"] == 120
    assert "warning" not in capsys.readouterr().err

    # Features of another profile are probed with this profile's settings, and it says so.
    other = tmp_path / "other"
    write_feature_dir(other, meta={"profile": "quick", "dataset": "cifar10_mini", "seed": 0})
    out3 = tmp_path / "r3.json"
    assert main(["probe", "--features", str(other), "--out", str(out3), "--no-mlflow", *base]) == 0
    assert (
        "extracted under profile 'quick'; probing with profile 'smoke'" in capsys.readouterr().err
    )

    np.savez(
        feats / "test.npz", features=np.zeros((3, C), np.float32), labels=np.zeros(4, np.int64)
    )
    out2 = tmp_path / "r2.json"
    assert main(["probe", "--features", str(feats), "--out", str(out2), "--no-mlflow", *base]) == 2
    assert "mismatched lengths" in capsys.readouterr().err
    assert not out2.exists()


def _all_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_write_report_writes_the_sidecar_for_every_run(tmp_path: Path) -> None:
    """Non-VSSL runs get the sidecar too (empty mean_variance): a declared output of the stage."""
    import pandas as pd

    x, y = one_hot_plus_noise(300, seed=0)
    xt, yt = one_hot_plus_noise(100, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k=200 is clamped on this tiny set
        report = run_probes(FeatureSet(x, y), FeatureSet(xt, yt), small_cfg(), seed=0)
    out = tmp_path / "seed0.json"
    assert write_report(report, out) == [out, sidecar_path(out)]
    side = pd.read_csv(sidecar_path(out))
    assert list(side.columns) == ["index", "label", "prediction", "correct", "mean_variance"]
    assert len(side) == 100 and side["mean_variance"].isna().all()
    np.testing.assert_array_equal(side["label"], yt)
    np.testing.assert_array_equal(side["correct"].astype(bool), report.correct)


def test_bad_devices_are_config_errors_before_any_work(tmp_path: Path, capsys) -> None:
    from vssl.cli import main
    from vssl.config import ConfigError
    from vssl.eval.device import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'gpu': not a torch device"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")
    # The device is checked before the features are read: the missing folder is not reported.
    out = str(tmp_path / "p.json")
    argv = ["probe", "--features", str(tmp_path / "none"), "--out", out, "--no-mlflow"]
    assert main([*argv, "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "not a torch device" in err and "feature folder" not in err
    with pytest.raises(SystemExit) as e:
        main([*argv, "--seed", "-5"])
    assert e.value.code == 2 and "invalid seed -5: must be >= 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_write_report_is_all_or_nothing(tmp_path: Path, monkeypatch) -> None:
    """A failure while writing results.json (a full disk) keeps the previous pair: no new
    sidecar beside an old results.json, no temporary files."""
    import errno

    import vssl.eval.probe as probe_mod

    x, y = one_hot_plus_noise(300, seed=0)
    xt, yt = one_hot_plus_noise(100, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_probes(FeatureSet(x, y), FeatureSet(xt, yt), small_cfg(), seed=0)
    out = tmp_path / "seed0.json"
    out.write_text("old results")
    sidecar_path(out).write_text("old sidecar")

    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(probe_mod, "write_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_report(report, out)
    assert out.read_text() == "old results"
    assert sidecar_path(out).read_text() == "old sidecar"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0.json", "seed0.uncertainty.csv"]


def test_cli_probe_labels_beyond_num_classes_fail_before_mlflow(
    tmp_path: Path, mlflow_uri: str, capsys
) -> None:
    from vssl.cli import main

    feats = tmp_path / "f"
    write_feature_dir(feats, {"dataset": "toy", "method": "vssl", "seed": 0, "num_classes": 5})
    out = tmp_path / "r.json"
    argv = ["probe", "--features", str(feats), "--out", str(out)]
    argv += ["--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vssl probe: error: ") and err.count("\n") == 1, err
    assert "labels reach 9 but meta declares num_classes=5" in err
    assert not out.exists() and not sidecar_path(out).exists()
    assert _all_runs(mlflow_uri) == []  # no FAILED run left in the store


@pytest.mark.parametrize("which", ["out_is_folder", "parent_is_file", "not_writable"])
def test_cli_probe_bad_output_paths_exit_2_before_any_work(
    tmp_path: Path, mlflow_uri: str, monkeypatch, capsys, which: str
) -> None:
    from test_io import make_unusable

    from vssl.cli import main
    from vssl.eval import features

    out = tmp_path / "results" / "seed0.json"
    make_unusable(out, which, monkeypatch)

    def no_loading(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("features loaded before the output path was checked")

    monkeypatch.setattr(features, "load_feature_dir", no_loading)
    argv = ["probe", "--features", str(tmp_path / "f"), "--out", str(out)]
    argv += ["--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vssl probe: error: ") and err.count("\n") == 1, err
    assert _all_runs(mlflow_uri) == []


def test_k_beyond_the_training_features_fails_before_any_probe_is_fitted(
    tmp_path: Path, mlflow_uri: str, monkeypatch, capsys
) -> None:
    """k was clamped to the bank size with a warning, and the results still said knn100000."""
    import vssl.eval.probe as probe_mod
    from vssl.cli import main
    from vssl.config import ConfigError

    def no_fitting(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a probe was fitted before k was checked")

    monkeypatch.setattr(probe_mod, "linear_probe", no_fitting)
    monkeypatch.setattr(probe_mod, "knn_classify_multi", no_fitting)
    x, y = one_hot_plus_noise(30, seed=0)
    cfg = ProbeCfg.model_validate({"knn": {"k": [5, 31, 200]}})
    with pytest.raises(ConfigError, match=r"k=31, 200 exceeds the 30 training features"):
        run_probes(FeatureSet(x, y), FeatureSet(x, y), cfg)

    feats, out = tmp_path / "f", tmp_path / "r.json"
    write_feature_dir(feats)  # 300 training features
    argv = ["probe", "--features", str(feats), "--out", str(out)]
    argv += ["--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    assert main([*argv, "--set", "probe.knn.k=[20, 100000]"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "vssl probe: error: probe.knn.k: k=100000 exceeds the 300 training features; use k <= 300\n"
    )
    assert not out.exists() and not sidecar_path(out).exists()
    assert _all_runs(mlflow_uri) == []


def test_the_probe_run_of_a_variant_logs_the_variants_config(
    tmp_path: Path, mlflow_uri: str
) -> None:
    """Every run logs the whole config: a probe of `vssl_nokl`'s features logged the base
    `methods.vssl.kl=cosine`, a setting its model never had."""
    from vssl.cli import main

    feats, out = tmp_path / "f", tmp_path / "r.json"
    meta = {"dataset": "toy", "method": "vssl", "variant": "vssl_nokl", "seed": 0}
    write_feature_dir(feats, {**meta, "profile": "smoke"})
    argv = ["probe", "--features", str(feats), "--out", str(out)]
    assert main([*argv, "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]) == 0
    (run,) = _all_runs(mlflow_uri)
    assert run.data.tags["variant"] == "vssl_nokl"
    assert run.data.params["methods.vssl.kl"] == "none"
