"""Dataset registry, splits, subsets, manifests and `vssl prepare` (real data from ../shared/data)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vssl.cli import main
from vssl.config import load_params
from vssl.data import (
    DataError,
    build_dataset,
    get_spec,
    imagenet100_classes,
    load_tensors,
    prepare,
    stratified_split,
    stratified_subset,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def test_builtin_specs_without_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    p = load_params(PARAMS, profile="smoke")
    c10, c100 = get_spec("cifar10", p), get_spec("cifar100", p)
    assert (c10.image_shape, c10.num_classes, c10.preset) == ((3, 32, 32), 10, "cifar")
    assert c100.num_classes == 100 and c100.classes == tuple(sorted(c100.classes))
    assert get_spec("stl10", p).pretrain_split == "train+unlabeled"
    fm = get_spec("fashion_mnist", p)
    assert (fm.channels, fm.image_size, fm.preset, len(fm.mean)) == (1, 28, "grayscale", 1)
    assert get_spec("imagenet100", p).in_memory is False


def test_unknown_dataset_lists_known(smoke_params):
    with pytest.raises(DataError, match="unknown dataset 'cifar11'.*cifar10.*cifar10_mini"):
        get_spec("cifar11", smoke_params)


def test_imagenet100_class_list():
    wnids = imagenet100_classes()
    assert len(wnids) == 100 and len(set(wnids)) == 100
    assert wnids[:3] == ("n02869837", "n01749939", "n02488291")  # CMC's order
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)


def _fake_imagenet(root: Path, classes: tuple[str, ...], split: str, per_class: int = 1) -> None:
    from PIL import Image

    for i, w in enumerate(classes):
        d = root / "imagenet100" / split / w
        d.mkdir(parents=True)
        for j in range(per_class):
            img = np.full((8 + i % 3, 10, 3), (i * 7 + j) % 255, dtype=np.uint8)
            Image.fromarray(img).save(d / f"{w}_{j}.png")


def test_imagenet100_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    p = load_params(PARAMS, profile="smoke", overrides=["data.train_subset=null"])
    classes = get_spec("imagenet100", p).classes
    _fake_imagenet(tmp_path, classes, "train")
    (tmp_path / "imagenet100" / "train" / "n99999999").mkdir()  # not an ImageNet-100 class
    ds = build_dataset("imagenet100", "train", p)
    assert len(ds) == 100
    img, label = ds[5]
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and label == 5
    with pytest.raises(DataError, match="test folder not found: .*imagenet100/val"):
        build_dataset("imagenet100", "test", p)
    # a missing class folder is a clear error naming it
    _fake_imagenet(tmp_path, classes[1:], "val")
    with pytest.raises(DataError, match=f"1 of 100 class folders missing.*{classes[0]}"):
        build_dataset("imagenet100", "test", p)
    with pytest.raises(DataError, match="cannot be loaded into memory"):
        load_tensors("imagenet100", "train", p)


def test_stratified_split_and_subset():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    tr, te = stratified_split(labels, 20, seed=0)
    assert len(te) == 20 and len(tr) == 80 and not set(tr) & set(te)
    assert np.bincount(labels[te]).tolist() == [8, 6, 4, 2]
    assert np.array_equal(te, stratified_split(labels, 20, seed=0)[1])  # deterministic
    assert not np.array_equal(te, stratified_split(labels, 20, seed=1)[1])
    sub = stratified_subset(labels, 50)
    assert np.bincount(labels[sub]).tolist() == [20, 15, 10, 5] and np.all(np.diff(sub) > 0)
    assert (
        len(stratified_subset(labels, None)) == 100 and len(stratified_subset(labels, 100)) == 100
    )
    with pytest.raises(DataError, match="a subset of 101 image.*exceeds the 100 there are"):
        stratified_subset(labels, 101)  # not silently the 100 there are
    with pytest.raises(DataError):
        stratified_split(labels, 100, seed=0)
    with pytest.raises(DataError, match="subset of 3 image.*one of each of the 4 classes"):
        stratified_subset(labels, 3)


def test_npz_hold_out_and_subsets(smoke_params):
    p = smoke_params
    spec = get_spec("cifar10_mini", p)
    assert spec.image_shape == (3, 32, 32) and spec.classes[0] == "airplane"
    assert all(0.2 < m < 0.6 for m in spec.mean) and all(0.2 < s < 0.3 for s in spec.std)
    x, y = load_tensors("cifar10_mini", "train", p)
    xt, yt = load_tensors("cifar10_mini", "test", p)
    assert x.dtype == torch.uint8 and x.shape == (512, 3, 32, 32) and xt.shape[0] == 256
    assert y.bincount().min() >= 48 and yt.bincount().min() >= 24  # stratified (about 10%)
    full = load_params(
        PARAMS, profile="smoke", overrides=["data.train_subset=null", "data.test_subset=null"]
    )
    xf, _ = load_tensors("cifar10_mini", "train", full)
    xtf, ytf = load_tensors("cifar10_mini", "test", full)
    assert len(xf) == 4085 and len(xtf) == 1000
    # train and test are disjoint images of the one file
    train_keys = {hashlib.md5(im.numpy().tobytes()).hexdigest() for im in xf}
    assert not any(hashlib.md5(im.numpy().tobytes()).hexdigest() in train_keys for im in xtf[:200])
    # the hold-out is fixed: the same images every time
    assert torch.equal(load_tensors("cifar10_mini", "test", full)[1], ytf)


def _write_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"images": np.zeros((20, 8, 8, 3), np.uint8)}, "missing array"),
        ({"images": np.zeros((20, 8, 8, 3), np.float32), "labels": np.zeros(20)}, "uint8"),
        ({"images": np.zeros((20, 8, 6, 3), np.uint8), "labels": np.zeros(20, int)}, "square"),
        ({"images": np.zeros((20, 8, 8, 3), np.uint8), "labels": np.zeros(19, int)}, "labels"),
    ],
)
def test_npz_validation(tmp_path, monkeypatch, arrays, match):
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    _write_npz(tmp_path / "bad" / "x.npz", **arrays)
    p = load_params(PARAMS, profile="smoke", overrides=["datasets.cifar10_mini.path=bad/x.npz"])
    with pytest.raises(DataError, match=match):
        get_spec("cifar10_mini", p)


def test_missing_files_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    p = load_params(PARAMS, profile="smoke")
    with pytest.raises(DataError, match="npz dataset file not found: .*cifar10-mini/train.npz"):
        get_spec("cifar10_mini", p)
    with pytest.raises(DataError, match=f"must lie in {tmp_path}/cifar-10-batches-py"):
        load_tensors("cifar10", "train", p)
    with pytest.raises(DataError, match="FashionMNIST/raw"):
        build_dataset("fashion_mnist", "test", p)
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="data root .*nowhere does not exist.*VSSL_DATA_ROOT"):
        load_tensors("cifar10", "train", p)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path / "a_file"))
    with pytest.raises(DataError, match="data root .*a_file is a file, not a folder"):
        load_tensors("cifar10", "train", p)


def test_damaged_files_are_not_called_missing(tmp_path, monkeypatch, data_root):
    """A truncated Fashion-MNIST file is there, just damaged: say so, not 'not found'."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_root / "FashionMNIST" / "raw").iterdir():
        (raw / f.name).symlink_to(f)
    (raw / "t10k-images-idx3-ubyte").unlink()
    source = data_root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    (raw / "t10k-images-idx3-ubyte").write_bytes(source.read_bytes()[:1000])
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    p = load_params(PARAMS, profile="smoke")
    with pytest.raises(
        DataError, match=r"the files in .*FashionMNIST/raw are incomplete or damaged"
    ):
        build_dataset("fashion_mnist", "test", p)


def test_fashion_mnist_dataset(smoke_params):
    ds = build_dataset("fashion_mnist", "test", smoke_params, transform=lambda t: t.float() / 255)
    x, y = ds[0]
    assert len(ds) == 256 and x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0 <= y < 10


def test_prepare_manifest(smoke_params, data_root):
    m = prepare("cifar10_mini", smoke_params, download=False)
    assert m["image_shape"] == [3, 32, 32] and m["num_classes"] == 10
    for split, n in (("train", 512), ("test", 256)):
        assert m["splits"][split]["count"] == n
        assert sum(m["splits"][split]["per_class"].values()) == n
    assert m["splits"]["train"]["full_count"] + m["splits"]["test"]["full_count"] == 5085
    digest = hashlib.sha256((data_root / "cifar10-mini" / "train.npz").read_bytes()).hexdigest()
    assert m["sha256"] == {"cifar10-mini/train.npz": digest}
    assert m["subset"] == {"train_subset": 512, "test_subset": 256, "seed": 0}


def test_prepare_cli(tmp_path, data_root, monkeypatch, capsys, mlflow_uri):
    from mlflow import MlflowClient

    monkeypatch.setenv("VSSL_DATA_ROOT", str(data_root))
    out = tmp_path / "data" / "prepared" / "smoke" / "fashion_mnist.json"
    args = ["prepare", "--params", str(PARAMS), "--profile", "smoke", "--dataset"]
    assert main([*args, "fashion_mnist", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["dataset"] == "fashion_mnist" and m["profile"] == "smoke"
    assert m["splits"]["train"]["full_count"] == 60000
    assert len(m["sha256"]) == 4  # the four idx files
    assert [p.name for p in out.parent.iterdir()] == ["fashion_mnist.json"]  # no temp files
    # The MLflow run says which files, how many images, and keeps the manifest.
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("vssl")
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'prepare'")
    assert run.data.tags["dataset"] == "fashion_mnist" and run.info.status == "FINISHED"
    assert {
        k[len("sha256.") :]: v for k, v in run.data.tags.items() if k.startswith("sha256.")
    } == m["sha256"]
    assert run.data.metrics["train_count"] == m["splits"]["train"]["count"]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["fashion_mnist.json"]
    assert main([*args, "fashion_mnist", "--out", str(out), "--no-mlflow"]) == 0
    assert len(client.search_runs([exp.experiment_id], "tags.stage = 'prepare'")) == 1
    bad = tmp_path / "bad.json"
    assert main([*args, "imagenet", "--out", str(bad)]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err and not bad.exists()


@pytest.mark.parametrize("which", ["out_is_folder", "parent_is_file", "not_writable"])
def test_prepare_bad_output_paths_exit_2_before_any_work(
    tmp_path, data_root, monkeypatch, capsys, which
):
    from test_io import make_unusable

    import vssl.data

    monkeypatch.setenv("VSSL_DATA_ROOT", str(data_root))
    out = tmp_path / "prepared" / "fashion_mnist.json"
    make_unusable(out, which, monkeypatch)

    def no_work(*a, **k):
        raise AssertionError("dataset prepared before the output path was checked")

    monkeypatch.setattr(vssl.data, "prepare", no_work)
    args = ["prepare", "--params", str(PARAMS), "--profile", "smoke", "--dataset"]
    assert main([*args, "fashion_mnist", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vssl prepare: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_prepare_offline_leaves_nothing_behind(tmp_path, monkeypatch, capsys, dataset):
    """A download that cannot happen must not leave empty (or partial) folders in the data root."""
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "data_root"
    root.mkdir()
    (root / "keep.txt").write_text("someone else's file")
    monkeypatch.setenv("VSSL_DATA_ROOT", str(root))
    out = tmp_path / "prepared" / f"{dataset}.json"
    args = ["prepare", "--params", str(PARAMS), "--profile", "smoke", "--dataset", dataset]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]
    assert not out.exists()


def test_prepare_offline_keeps_folders_that_existed(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    (tmp_path / "FashionMNIST" / "processed").mkdir(parents=True)
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    with pytest.raises(DataError, match="could not be downloaded"):
        prepare("fashion_mnist", load_params(PARAMS, profile="smoke"))
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == [
        "FashionMNIST",
        "FashionMNIST/processed",
    ]


def test_cifar_files_that_fail_their_checksum_are_named_as_such(tmp_path, monkeypatch):
    """torchvision checks CIFAR's files against their official MD5 on every open: files that are
    there but differ are reported as damaged or unofficial, not as missing, and are kept."""
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (batches / name).write_bytes(b"not the official file")
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    p = load_params(PARAMS, profile="smoke")
    with pytest.raises(DataError, match="incomplete, damaged or not the official ones"):
        prepare("cifar10", p)
    with pytest.raises(DataError, match="are incomplete or damaged"):
        load_tensors("cifar10", "train", p)
    assert len(list(batches.iterdir())) == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.train_subset=99999999",
            "data.train_subset=99999999 exceeds the 4085 images of dataset 'cifar10_mini', "
            "split 'train' (set at most 4085, or null for the whole split)",
        ),
        (
            "data.test_subset=1001",
            "data.test_subset=1001 exceeds the 1000 images of dataset 'cifar10_mini', "
            "split 'test' (set at most 1000, or null for the whole split)",
        ),
    ],
)
def test_a_subset_larger_than_its_split_is_an_error(
    smoke_params, tmp_path, monkeypatch, capsys, override, message
):
    """It was clamped to the whole split without a word: a different experiment than asked."""
    import vssl.train.assembly

    p = load_params(PARAMS, profile="smoke", overrides=[override])
    with pytest.raises(DataError) as e:
        build_dataset("cifar10_mini", "train" if "train" in override else "test", p)
    assert str(e.value) == message
    whole = ["data.train_subset=4085", "data.test_subset=1000"]  # exactly the split: fine
    full = load_params(PARAMS, profile="smoke", overrides=whole)
    assert len(load_tensors("cifar10_mini", "train", full)[1]) == 4085

    def no_model(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the model was built before the subset was checked")

    monkeypatch.setattr(vssl.train.assembly, "build_method", no_model)
    out = tmp_path / "run"
    argv = ["pretrain", "--params", str(PARAMS), "--profile", "smoke", "--dataset", "cifar10_mini"]
    argv += ["--method", "vssl", "--seed", "0", "--out", str(out), "--no-mlflow"]
    assert main([*argv, "--set", override]) == 2
    assert capsys.readouterr().err == f"vssl pretrain: error: {message}\n"
    assert not out.exists() or not any(out.iterdir())
