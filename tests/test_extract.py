"""`vssl extract` on real data (cifar10-mini, smoke profile): shapes, determinism, errors, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vssl.eval.extract import extraction_params, plan_extraction
from vssl.eval.features import load_feature_dir

ROOT = Path(__file__).resolve().parents[1]
DATASET = "cifar10_mini"


def make_checkpoint(path: Path, params, method: str, mlflow_run_id: str | None = None) -> Path:
    """A checkpoint in the documented format around a freshly initialised method (epoch 0)."""
    from vssl.data import get_spec
    from vssl.train.assembly import build_method
    from vssl.train.checkpoint import save_checkpoint

    spec = get_spec(DATASET, params)
    data_spec = {
        "image_size": spec.image_size,
        "channels": spec.channels,
        "classes": list(spec.classes),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "preset": spec.preset,
    }
    torch.manual_seed(0)
    model, _ = build_method(method, params, data_spec)
    save_checkpoint(
        path,
        {
            "method": method,
            "dataset": DATASET,
            "seed": 0,
            "epoch": 0,
            "total_epochs": 0,
            "complete": True,
            "config": params.to_dict(),
            "data_spec": data_spec,
            "model": model.state_dict(),
            "optimizer": {},
            "scheduler": {},
            "online_probe": {},
            "rng": {},
            "mlflow_run_id": mlflow_run_id,
            "git_commit": None,
            "versions": {},
        },
    )
    return path


N_TRAIN, N_TEST = 160, 80
# Smaller than the smoke subsets (thin convolutions are slow on CPU), batches that do not
# divide the splits (the last batch is partial).
TINY = [f"data.train_subset={N_TRAIN}", f"data.test_subset={N_TEST}", "extract.batch_size=64"]


@pytest.fixture()
def params(smoke_params):
    """The smoke profile with TINY applied (smoke_params also sets the data root and MLflow)."""
    from vssl.config import load_params

    return load_params(ROOT / "params.yaml", profile="smoke", overrides=TINY)


@pytest.fixture(scope="module")
def ckpts(data_root: Path, tmp_path_factory) -> dict[str, Path]:
    """One epoch-0 checkpoint per method, built once for the module."""
    from vssl.config import load_params

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VSSL_DATA_ROOT", str(data_root))
        params = load_params(ROOT / "params.yaml", profile="smoke", overrides=TINY)
        folder = tmp_path_factory.mktemp("ckpts")
        return {
            m: make_checkpoint(folder / f"{m}.pt", params, m) for m in ("vssl", "byol", "random")
        }


def cli_base(tmp_path: Path) -> list[str]:
    sets = [a for s in TINY for a in ("--set", s)]
    return ["--params", str(ROOT / "params.yaml"), "--profile", "smoke", *sets]


def test_extract_vssl_shapes_dtypes_and_determinism(tmp_path: Path, params, ckpts) -> None:
    from vssl.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpts["vssl"])
    plan = plan_extraction(ckpt, DATASET, params, checkpoint_path=ckpts["vssl"])
    first = plan.run(torch.device("cpu"), progress=False)
    second = plan.run(torch.device("cpu"), progress=False)

    latent = params.methods.vssl.latent_dim
    for fs, n in ((first.train, N_TRAIN), (first.test, N_TEST)):
        assert fs.features.shape == (n, 8 * params.backbone.width)
        assert fs.features.dtype == np.float32 and fs.labels.dtype == np.int64
        assert fs.mu.shape == fs.logvar.shape == (n, latent)
        assert fs.mu.dtype == fs.logvar.dtype == np.float32
        assert np.bincount(fs.labels, minlength=10).min() > 0  # stratified subsets
        assert fs.features.std(0).max() > 0  # not a constant output
    for a, b in ((first.train, second.train), (first.test, second.test)):
        for key in ("features", "labels", "mu", "logvar"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert first.meta == second.meta
    assert first.meta["checkpoint_sha256"] and first.meta["num_classes"] == 10

    # The labels are the dataset's own, in order (shuffle=False).
    from vssl.data import load_tensors

    _, labels = load_tensors(DATASET, "test", params)
    np.testing.assert_array_equal(first.test.labels, labels.numpy())

    written = first.write(tmp_path / "feats")
    assert [p.name for p in written] == ["train.npz", "test.npz", "meta.json"]
    train, test = load_feature_dir(tmp_path / "feats")
    np.testing.assert_array_equal(train.mu, first.train.mu)
    assert json.loads((tmp_path / "feats" / "meta.json").read_text()) == train.meta == test.meta


def test_writing_features_is_all_or_nothing(tmp_path: Path, monkeypatch) -> None:
    """A failure on the second split (a full disk) leaves no train.npz without its test.npz and
    meta.json, and no temporary files; a complete write gives all three."""
    import errno

    import vssl.eval.extract as extract_mod
    from vssl.eval.extract import Extraction
    from vssl.eval.features import FeatureSet, save_features

    rng = np.random.default_rng(0)
    fs = FeatureSet(rng.normal(size=(6, 4)).astype(np.float32), np.arange(6) % 3)
    ext = Extraction(train=fs, test=fs, meta={"method": "byol"}, seconds=0.0)
    calls = []

    def second_fails(path, features):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save_features(path, features)

    monkeypatch.setattr(extract_mod, "save_features", second_fails)
    out = tmp_path / "feats"
    with pytest.raises(OSError, match="No space left"):
        ext.write(out)
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.setattr(extract_mod, "save_features", save_features)
    ext.write(out)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.npz", "train.npz"]
    train, _ = load_feature_dir(out)
    np.testing.assert_array_equal(train.features, fs.features)


@pytest.mark.parametrize("method", ["random"])
def test_extract_deterministic_methods_have_no_gaussian(params, ckpts, method: str) -> None:
    from vssl.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpts[method])
    ext = plan_extraction(ckpt, DATASET, params).run(torch.device("cpu"), progress=False)
    assert ext.train.mu is None and ext.test.logvar is None
    assert ext.meta["epoch"] == 0 and ext.meta["latent_dim"] is None
    assert ext.train.features.shape == (N_TRAIN, 8 * params.backbone.width)


def test_extraction_params_sources(params, ckpts) -> None:
    from vssl.config import ConfigError
    from vssl.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpts["random"])
    # Checkpoint's config by default; data sections from the file with a profile; --set last.
    assert extraction_params(ckpt).extract.batch_size == 64
    p = extraction_params(ckpt, ROOT / "params.yaml", "smoke", ["data.test_subset=64"])
    assert p.extract.batch_size == 512 and p.data.test_subset == 64
    assert p.backbone == params.backbone
    with pytest.raises(ConfigError, match="takes 'backbone' from the checkpoint"):
        extraction_params(ckpt, overrides=["backbone.width=8"])


def test_cli_extract_then_probe_nested_in_mlflow(
    tmp_path: Path, params, ckpts, mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    from vssl import tracking
    from vssl.cli import main
    from vssl.train.checkpoint import load_checkpoint, save_checkpoint

    with tracking.start_run(params, stage="pretrain", dataset=DATASET, method="vssl", seed=0) as r:
        parent = r.info.run_id
    ckpt = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(ckpt, {**load_checkpoint(ckpts["vssl"]), "mlflow_run_id": parent})
    feats, out = tmp_path / "feats", tmp_path / "probe" / "seed0.json"
    base = cli_base(tmp_path)
    assert (
        main(
            [
                "extract",
                "--checkpoint",
                str(ckpt.parent),
                "--dataset",
                DATASET,
                "--out",
                str(feats),
                *base,
            ]
        )
        == 0
    )
    knn = ["--set", f"probe.knn.k=[20,{N_TRAIN}]"]  # smoke's k=200 exceeds the 160 features
    assert main(["probe", "--features", str(feats), "--out", str(out), *base, *knn]) == 0

    results = json.loads(out.read_text())
    assert results["n_train"] == N_TRAIN and results["n_test"] == N_TEST
    assert "uncertainty_error_auroc" in results and out.with_name("seed0.uncertainty.csv").is_file()
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("vssl").experiment_id
    for stage in ("extract", "probe"):
        (run,) = client.search_runs([exp], f"tags.stage = '{stage}'")
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["profile"] == "smoke" and run.data.tags["method"] == "vssl"


def test_corrupt_checkpoint_and_bad_requests_leave_no_output(
    tmp_path: Path, params, ckpts, capsys
) -> None:
    from vssl.cli import main

    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00garbage, not a torch file")
    feats = tmp_path / "feats"
    argv = [
        "extract",
        "--checkpoint",
        str(bad),
        "--dataset",
        DATASET,
        "--out",
        str(feats),
        "--no-mlflow",
    ]
    assert main(argv) == 2
    assert "corrupt or unreadable checkpoint" in capsys.readouterr().err
    assert not feats.exists()

    argv[2] = str(ckpts["random"])
    argv[4] = "fashion_mnist"
    assert main(argv) == 2
    assert "pretrained on 'cifar10_mini', not 'fashion_mnist'" in capsys.readouterr().err
    assert main([*argv, "--allow-dataset-mismatch"]) == 2
    assert "1-channel images" in capsys.readouterr().err
    argv[4] = "no_such_set"
    assert main(argv) == 2
    assert "unknown dataset 'no_such_set'; known:" in capsys.readouterr().err
    assert not feats.exists()

    # A run folder with only the partial checkpoint of an unfinished run says so.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "checkpoint.partial.pt").write_bytes(b"state")
    argv[2], argv[4] = str(unfinished), DATASET
    assert main(argv) == 2
    assert "the run is unfinished (checkpoint.partial.pt is there)" in capsys.readouterr().err
    assert not feats.exists()


@pytest.mark.slow
def test_real_pretraining_features_probe_like_sklearn(
    tmp_path: Path, smoke_params, mlflow_uri: str
) -> None:
    """1 epoch of VSSL on cifar10-mini -> extract -> probe; sklearn on the same features."""
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from vssl.cli import main
    from vssl.eval.knn import knn_predict

    params = ["--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    data = ["--set", "data.train_subset=1000", "--set", "data.test_subset=500"]
    run, feats, out = tmp_path / "run", tmp_path / "feats", tmp_path / "seed0.json"
    pre = ["pretrain", "--dataset", DATASET, "--method", "vssl", "--seed", "0", "--out", str(run)]
    assert main([*pre, *params, *data, "--set", "pretrain.epochs=1"]) == 0
    ext = ["extract", "--checkpoint", str(run / "checkpoint.pt"), "--dataset", DATASET]
    assert main([*ext, "--out", str(feats), *params, *data]) == 0
    # Real features are ill-conditioned: give L-BFGS room to converge, then compare optima.
    probe = ["probe", "--features", str(feats), "--out", str(out), *params]
    assert main([*probe, "--set", "probe.linear.max_iter=1000"]) == 0
    r = json.loads(out.read_text())
    train, test = load_feature_dir(feats)
    assert (r["n_train"], r["n_test"]) == (train.n, test.n) == (1000, 500)

    # Linear probe = sklearn's LogisticRegression at the chosen weight decay (C = 1 / (wd n)).
    wd = r["linear_weight_decay"]
    scaler = StandardScaler().fit(train.features)
    reg = {"C": 1.0 / (wd * train.n)} if wd > 0 else {"penalty": None}
    ref = LogisticRegression(max_iter=5000, tol=1e-8, **reg)
    ref.fit(scaler.transform(train.features), train.labels)
    ref_acc = 100 * ref.score(scaler.transform(test.features), test.labels)
    assert ref_acc > 13, "real features must beat chance (10%, sd 1.3 on 500 samples)"
    assert abs(r["linear_top1"] - ref_acc) <= 1.0

    # kNN: uniform votes = sklearn's uniform rule; temperature votes = exp(-d / T) weights.
    ref_u = KNeighborsClassifier(20, metric="cosine").fit(train.features, train.labels)
    ours_u = knn_predict(train.features, train.labels, test.features, 20, weighting="uniform")
    assert abs(100 * (ours_u.numpy() == test.labels).mean() - 100 * ref_u.score(test.features, test.labels)) <= 1.0  # fmt: skip
    ref_t = KNeighborsClassifier(20, metric="cosine", weights=lambda d: np.exp(-d / 0.07))
    ref_t_acc = 100 * ref_t.fit(train.features, train.labels).score(test.features, test.labels)
    assert abs(r["knn20_top1"] - ref_t_acc) <= 1.0

    side = np.loadtxt(tmp_path / "seed0.uncertainty.csv", delimiter=",", skiprows=1)
    auc = roc_auc_score(1 - side[:, 3], side[:, 4])
    assert r["uncertainty_error_auroc"] == pytest.approx(auc)

    # The engine's own kNN monitor (same protocol, same features) agrees with the probe.
    metrics = json.loads((run / "metrics.json").read_text())
    if metrics.get("knn_top1") is not None:
        assert metrics["knn_top1"] == pytest.approx(r["knn20_top1"], abs=0.5)

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("vssl").experiment_id
    (parent,) = client.search_runs([exp], "tags.stage = 'pretrain'")
    for stage in ("extract", "probe"):
        (child,) = client.search_runs([exp], f"tags.stage = '{stage}'")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id


def _all_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_nonfinite_weights_fail_before_data_and_mlflow(
    tmp_path: Path, params, ckpts, mlflow_uri: str, monkeypatch, capsys
) -> None:
    import vssl.data
    from vssl.cli import main
    from vssl.config import ConfigError
    from vssl.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(ckpts["byol"])
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["model"][name][0] = float("nan")
    inf = next(k for k, v in ckpt["model"].items() if k.endswith("running_var"))
    ckpt["model"][inf][-1] = float("inf")
    bad = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(bad, ckpt)

    def no_data(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("data loaded before the weights were checked")

    monkeypatch.setattr(vssl.data, "build_dataset", no_data)
    with pytest.raises(ConfigError, match="non-finite") as e:
        plan_extraction(load_checkpoint(bad), DATASET, params, checkpoint_path=bad)
    assert name in str(e.value) and "2 tensor(s)" in str(e.value)

    feats = tmp_path / "feats"
    argv = ["extract", "--checkpoint", str(bad), "--dataset", DATASET, "--out", str(feats)]
    assert main([*argv, *cli_base(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vssl extract: error: ") and err.count("\n") == 1, err
    assert "NaN/inf" in err and name in err
    assert not feats.exists()
    assert _all_runs(mlflow_uri) == []


@pytest.mark.parametrize("which", ["out_is_file", "parent_is_file", "not_writable"])
def test_extract_bad_output_paths_exit_2_before_any_work(
    tmp_path: Path, mlflow_uri: str, monkeypatch, capsys, which: str
) -> None:
    from test_io import deny_writes

    import vssl.train.checkpoint
    from vssl.cli import main

    feats = tmp_path / "features" / "seed0"
    if which == "out_is_file":
        feats.parent.mkdir()
        feats.write_text("a file")
    elif which == "parent_is_file":
        feats.parent.write_text("a file")
    else:
        feats.parent.mkdir()
        deny_writes(monkeypatch, feats.parent)

    def no_loading(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("checkpoint loaded before the output path was checked")

    monkeypatch.setattr(vssl.train.checkpoint, "load_checkpoint", no_loading)
    argv = ["extract", "--checkpoint", str(tmp_path / "c.pt"), "--dataset", DATASET]
    assert main([*argv, "--out", str(feats), *cli_base(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vssl extract: error: ") and err.count("\n") == 1, err
    assert _all_runs(mlflow_uri) == []


def test_checkpoint_written_before_retired_keys_still_loads(ckpts) -> None:
    """Checkpoints written while params.yaml still had `pretrain.base_lr` / `weight_decay`
    (removed: they had no effect) rebuild the same method; an unknown key is still an error."""
    from vssl.train.checkpoint import CheckpointError, load_checkpoint, method_from_checkpoint

    ck = load_checkpoint(ckpts["vssl"])
    old = {**ck, "config": {**ck["config"]}}
    old["config"]["pretrain"] = {**ck["config"]["pretrain"], "base_lr": 1.0, "weight_decay": 1e-5}
    model, params = method_from_checkpoint(old)
    assert "base_lr" not in params.to_dict()["pretrain"]
    ref, _ = method_from_checkpoint(ck)
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    old["config"]["pretrain"]["not_a_key"] = 1
    with pytest.raises(CheckpointError, match="not_a_key"):
        method_from_checkpoint(old)


def test_checkpoint_written_before_added_keys_still_loads(ckpts) -> None:
    """Checkpoints written before `methods.vssl.variance_input` existed load with the value they
    trained with (`head`)."""
    from vssl.train.checkpoint import load_checkpoint, method_from_checkpoint

    ck = load_checkpoint(ckpts["vssl"])
    vssl_cfg = {k: v for k, v in ck["config"]["methods"]["vssl"].items() if k != "variance_input"}
    old = {
        **ck,
        "config": {**ck["config"], "methods": {**ck["config"]["methods"], "vssl": vssl_cfg}},
    }
    model, params = method_from_checkpoint(old)
    assert params.methods.vssl.variance_input == "head"
    assert model.variance_input == "head"


def test_bytes_damaged_inside_a_tensor_are_caught(ckpts, tmp_path: Path) -> None:
    """torch.load does not check the CRC-32s its zip writer stores: flipped bytes inside a
    weight load silently. load_checkpoint checks them and refuses the file."""
    import shutil
    import zipfile

    from vssl.train.checkpoint import UnreadableCheckpointError, load_checkpoint

    damaged = tmp_path / "checkpoint.pt"
    shutil.copy(ckpts["vssl"], damaged)
    with zipfile.ZipFile(damaged) as z:
        tensors = [i for i in z.infolist() if "/data/" in i.filename]
        info = max(tensors, key=lambda i: i.file_size)  # the largest tensor's storage
    with open(damaged, "r+b") as f:
        f.seek(info.header_offset + 26)  # local header: name and extra-field lengths
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(start)
        chunk = bytes(b ^ 0xFF for b in f.read(16))
        f.seek(start)
        f.write(chunk)
    torch.load(damaged, map_location="cpu", weights_only=True)  # torch itself does not notice
    with pytest.raises(UnreadableCheckpointError, match=r"CRC-32 of .*data/\d+ does not match"):
        load_checkpoint(damaged)
    assert load_checkpoint(ckpts["vssl"])["method"] == "vssl"


def test_extraction_saves_the_students_posterior_not_the_teachers_prior(ckpts) -> None:
    """After training the teacher differs from the student; the saved mu/logvar (what the
    uncertainty AUROC scores) are the student's posterior q(z|x), not the teacher's prior."""
    from torch.utils.data import TensorDataset

    from vssl.eval.extract import extract_features
    from vssl.train.checkpoint import load_checkpoint, method_from_checkpoint

    method, _ = method_from_checkpoint(load_checkpoint(ckpts["vssl"]))
    with torch.no_grad():  # an EMA teacher that has drifted from the student
        for name, p in method.named_parameters():
            if name.startswith("teacher_"):
                p.add_(0.5 * torch.randn_like(p))
    images = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fs = extract_features(
        method, TensorDataset(images, torch.zeros(12)), 5, torch.device("cpu"), progress=False
    )
    mu_s, lv_s = method.gaussian(images)
    mu_t, lv_t = method.prior(images)
    np.testing.assert_allclose(fs.mu, mu_s.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fs.logvar, lv_s.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fs.logvar, lv_t.numpy(), atol=1e-3)
    np.testing.assert_allclose(
        fs.features, method.backbone(images).detach().numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("extract.batch_size=0", "  extract.batch_size: Input should be greater than 0"),
        ("extract.batch_size=abc", "  extract.batch_size: Input should be a valid integer"),
        ("data.num_workers=-2", "  data.num_workers: Value error, must be a whole number >= 0"),
    ],
)
def test_bad_set_values_are_one_clean_line_per_key(
    tmp_path: Path, ckpts, capsys, override: str, line: str
) -> None:
    """As every other command reports them, not as pydantic's multi-line dump with its URL."""
    from vssl.cli import main

    feats = tmp_path / "feats"
    argv = ["extract", "--checkpoint", str(ckpts["random"]), "--dataset", DATASET]
    assert main([*argv, "--out", str(feats), "--no-mlflow", "--set", override]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "vssl extract: error: extraction params (checkpoint config with --set overrides): "
        "invalid configuration"
    )
    assert len(err) == 2 and err[1].startswith(line), err
    assert "pydantic" not in err[1] and "[type=" not in err[1]
    assert not feats.exists()


@pytest.mark.parametrize("damage", ["random_bytes", "truncated"])
def test_unreadable_checkpoints_say_what_they_are_without_torchs_advice(
    ckpts, tmp_path: Path, capsys, damage: str
) -> None:
    """torch's own message advised `weights_only=False` (unsafe, and useless for a damaged
    file) and was cut mid-word at 300 characters."""
    from vssl.cli import main
    from vssl.train.checkpoint import UnreadableCheckpointError, load_checkpoint

    bad = tmp_path / "checkpoint.pt"
    if damage == "random_bytes":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        whole = ckpts["vssl"].read_bytes()
        bad.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnreadableCheckpointError) as e:
        load_checkpoint(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: corrupt or unreadable checkpoint (truncated, damaged or not ")
    assert msg.endswith(")")
    reason = msg.split("; torch.load: ", 1)[1][:-1]
    assert "weights_only" not in msg and "succeed" not in msg
    assert "\n" not in msg and 0 < len(reason) <= 124
    if damage == "truncated":  # the whole first sentence, not a cut
        assert reason == "PytorchStreamReader failed reading zip archive: failed finding central directory"  # fmt: skip

    argv = ["extract", "--checkpoint", str(bad), "--dataset", DATASET, "--out", str(tmp_path / "f")]
    assert main([*argv, "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err == f"vssl extract: error: {msg}\n"
