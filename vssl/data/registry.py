"""Datasets by registry name: specs, loaders, splits, subsets and manifests.

Built in: ``cifar10``, ``cifar100``, ``stl10``, ``fashion_mnist`` (torchvision; downloaded into
the data root by :func:`prepare` when missing and the network allows) and ``imagenet100`` (an
ImageFolder tree restricted to the CMC ImageNet-100 class list shipped in
``vssl/data/imagenet100_classes.txt``). Any ``.npz`` declared under ``datasets:`` in params.yaml
(``images`` uint8 (N, H, W, C), ``labels`` int (N,), optional ``classes`` str (K,)) is available
by its key, with a fixed seeded stratified train/test hold-out (``test_size``, ``split_seed``).

Images are uint8 tensors (C, H, W); a dataset item is ``(transform(image), label)``. Subsets
(``data.train_subset`` / ``data.test_subset``) are stratified with the fixed seed
:data:`~vssl.data.splits.SUBSET_SEED`. Pretraining on STL-10 uses ``train+unlabeled`` (labels
of the unlabeled images are -1), as solo-learn does.

Where files must lie, relative to the data root (``data_root`` / ``VSSL_DATA_ROOT``)::

    cifar10        cifar-10-batches-py/      (torchvision layout)
    cifar100       cifar-100-python/
    stl10          stl10_binary/
    fashion_mnist  FashionMNIST/raw/
    imagenet100    imagenet100/train/<wnid>/*, imagenet100/val/<wnid>/*
    <npz key>      the `path` declared in params.yaml

Pretraining never downloads (parallel jobs would race): run ``vssl prepare`` first. A download
that fails (offline, read-only root, bad checksum) removes what it created under the data root
(:func:`_download_footprint`), so a later attempt starts clean and nothing empty is left behind.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vssl.data.splits import SUBSET_SEED, DataError, stratified_split, stratified_subset

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from vssl.config import Params

MANIFEST_VERSION = 1
SPLITS = ("train", "test")

CIFAR10_CLASSES = (
    "airplane automobile bird cat deer dog frog horse ship truck".split()  # noqa: SIM905
)
# CIFAR-100's fine labels in label order (alphabetical), as in the dataset's `meta` file.
CIFAR100_CLASSES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach
couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail
snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
STL10_CLASSES = "airplane bird car cat deer dog horse monkey ship truck".split()
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.cache
def imagenet100_classes() -> tuple[str, ...]:
    """The 100 ImageNet-100 wnids (CMC list, Tian et al. 2019), in the shipped file's order."""
    text = resources.files("vssl.data").joinpath("imagenet100_classes.txt").read_text()
    wnids = tuple(w for w in text.split() if w)
    if len(wnids) != 100 or len(set(wnids)) != 100:
        raise DataError(f"imagenet100_classes.txt must hold 100 distinct wnids, got {len(wnids)}")
    return wnids


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of the package needs to know about a dataset, without loading it.

    ``mean``/``std`` are per-channel statistics of images scaled to [0, 1] (normalisation is
    ``(x / 255 - mean) / std``). ``in_memory`` datasets can be loaded as uint8 tensors.
    """

    name: str
    kind: str  # "torchvision" | "imagefolder" | "npz"
    image_size: int
    channels: int
    classes: tuple[str, ...]
    preset: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    location: str  # where the files must lie, relative to the data root
    splits: tuple[str, ...] = SPLITS
    pretrain_split: str = "train"
    in_memory: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


_BUILTIN: dict[str, dict[str, Any]] = {
    "cifar10": dict(
        image_size=32,
        channels=3,
        classes=tuple(CIFAR10_CLASSES),
        preset="cifar",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        location="cifar-10-batches-py",
    ),
    "cifar100": dict(
        image_size=32,
        channels=3,
        classes=tuple(CIFAR100_CLASSES),
        preset="cifar",
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        location="cifar-100-python",
    ),
    "stl10": dict(
        image_size=96,
        channels=3,
        classes=tuple(STL10_CLASSES),
        preset="stl",
        mean=(0.4467, 0.4398, 0.4066),
        std=(0.2603, 0.2566, 0.2713),
        location="stl10_binary",
        splits=("train", "test", "train+unlabeled"),
        pretrain_split="train+unlabeled",
    ),
    "fashion_mnist": dict(
        image_size=28,
        channels=1,
        classes=tuple(FASHION_MNIST_CLASSES),
        preset="grayscale",
        mean=(0.2860,),
        std=(0.3530,),
        location="FashionMNIST/raw",
    ),
}


def _root(params: Params) -> Path:
    root = params.data_root_path()
    if root.exists() and not root.is_dir():
        raise DataError(
            f"data root {root} is a file, not a folder (set `data_root` in params.yaml or the "
            "VSSL_DATA_ROOT environment variable)"
        )
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist (set `data_root` in params.yaml or the "
            "VSSL_DATA_ROOT environment variable)"
        )
    return root


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise DataError(f"dataset {spec.name!r} has no split {split!r}; known: {spec.splits}")


def get_spec(name: str, params: Params) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; unknown names raise ``DataError`` listing the known.

    For an ``npz`` dataset the file is read (cached) to get its shape, classes and the
    per-channel mean/std of its train split.
    """
    if name in _BUILTIN:
        return DatasetSpec(name=name, kind="torchvision", **_BUILTIN[name])
    if name == "imagenet100":
        return DatasetSpec(
            name=name,
            kind="imagefolder",
            image_size=224,
            channels=3,
            classes=tuple(sorted(imagenet100_classes())),  # ImageFolder's label order
            preset="imagenet",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            location="imagenet100",
            in_memory=False,
        )
    if name in params.datasets:
        cfg = params.datasets[name]
        path = _root(params) / cfg.path
        mtime = path.stat().st_mtime_ns if path.exists() else 0
        images, labels, classes = _read_npz(str(path), mtime)
        mean, std = _npz_train_stats(str(path), mtime, cfg.test_size, cfg.split_seed)
        return DatasetSpec(
            name=name,
            kind="npz",
            image_size=images.shape[1],
            channels=images.shape[3],
            classes=classes,
            preset=cfg.preset,
            mean=mean,
            std=std,
            location=cfg.path,
            options={"test_size": cfg.test_size, "split_seed": cfg.split_seed},
        )
    known = list(_BUILTIN) + ["imagenet100"] + list(params.datasets)
    raise DataError(
        f"unknown dataset {name!r}; known: {', '.join(known)} "
        "(declare an .npz dataset under `datasets:` in params.yaml)"
    )


# ---------------------------------------------------------------------------------------------
# npz


@functools.lru_cache(maxsize=4)
def _read_npz(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load and validate an image .npz (cached per path and modification time)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"npz dataset file not found: {p} (the `path` is relative to the data root)"
        )
    try:
        with np.load(p, allow_pickle=False) as z:
            files = set(z.files)
            missing = {"images", "labels"} - files
            if missing:
                raise DataError(
                    f"{p}: missing array(s) {sorted(missing)}; found {sorted(files)} "
                    "(need images uint8 (N, H, W, C) and labels int (N,))"
                )
            images, labels = z["images"], z["labels"]
            classes = z["classes"] if "classes" in files else None
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled arrays), OSError
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DataError(
            f"{p}: images must be uint8 (N, H, W, C) with C in (1, 3), got {images.dtype} "
            f"{images.shape}"
        )
    if images.shape[1] != images.shape[2]:
        raise DataError(f"{p}: images must be square, got H x W = {images.shape[1:3]}")
    if (
        labels.ndim != 1
        or len(labels) != len(images)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise DataError(
            f"{p}: labels must be integers of shape ({len(images)},), got {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.min() < 0:
        raise DataError(f"{p}: labels must be >= 0, got min {labels.min()}")
    k = int(labels.max()) + 1
    if classes is not None:
        classes = tuple(str(c) for c in classes.tolist())
        if len(classes) < k:
            raise DataError(f"{p}: {len(classes)} class names but labels reach {k - 1}")
    else:
        classes = tuple(str(i) for i in range(k))
    images.setflags(write=False)
    return images, labels.astype(np.int64), classes


def _npz_split(labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if test_size >= len(labels):
        raise DataError(f"npz hold-out test_size={test_size} must be < the {len(labels)} images")
    return stratified_split(labels, test_size, seed)


@functools.lru_cache(maxsize=8)
def _npz_train_stats(
    path: str, mtime_ns: int, test_size: int, seed: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Channel statistics of an npz dataset's train split, cached: get_spec is called several
    times per stage and the statistics cost ~0.3 s each time."""
    images, labels, _ = _read_npz(path, mtime_ns)
    train_idx, _ = _npz_split(labels, test_size, seed)
    return _channel_stats(images, train_idx)


def _channel_stats(
    images: np.ndarray, index: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images[index] / 255`` (rounded to 4 decimals)."""
    x = images[index].reshape(-1, images.shape[3]).astype(np.float64) / 255.0
    return tuple(round(float(v), 4) for v in x.mean(0)), tuple(round(float(v), 4) for v in x.std(0))


# ---------------------------------------------------------------------------------------------
# loading


def _torchvision_arrays(
    name: str, split: str, root: Path, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, C, H, W), labels int64 (N,)) of a torchvision dataset split."""
    import torchvision.datasets as tvd

    def make(dl: bool) -> Any:
        r = str(root)
        if name == "cifar10":
            return tvd.CIFAR10(r, train=split == "train", download=dl)
        if name == "cifar100":
            return tvd.CIFAR100(r, train=split == "train", download=dl)
        if name == "stl10":
            return tvd.STL10(r, split=split, download=dl)
        return tvd.FashionMNIST(r, train=split == "train", download=dl)

    where = root / _BUILTIN[name]["location"]
    try:
        ds = make(False)
    except (RuntimeError, FileNotFoundError, OSError) as first:
        # Files already there that torchvision refuses (CIFAR's are checked against their
        # official MD5 on every open) are damaged or not the official ones, not missing.
        present = where.is_dir() and any(where.iterdir())
        if not download and present:
            raise DataError(
                f"dataset {name!r}: the files in {where} are incomplete or damaged "
                f"({type(first).__name__}: {_one_line(first)}); remove them and run `vssl "
                f"prepare --dataset {name}` to download them again where the network allows"
            ) from None
        if not download:
            raise DataError(
                f"dataset {name!r} not found: its files must lie in {where} (torchvision layout). "
                f"Run `vssl prepare --dataset {name}` to download it where the network allows "
                f"({type(first).__name__}: {_one_line(first)})"
            ) from None
        footprint = _download_footprint(name)
        existed = {rel for rel in footprint if os.path.lexists(root / rel)}
        try:
            ds = make(True)
        except BaseException as e:  # no network, read-only root, bad checksum, Ctrl-C...
            _remove_new(root, footprint, existed)
            if not isinstance(e, Exception):
                raise
            if present:
                raise DataError(
                    f"dataset {name!r}: the files in {where} are incomplete, damaged or not the "
                    f"official ones (torchvision: {_one_line(first)}), and a fresh download "
                    f"failed ({type(e).__name__}: {_one_line(e)})"
                ) from None
            raise DataError(
                f"dataset {name!r} is missing and could not be downloaded "
                f"({type(e).__name__}: {_one_line(e)}); put its files in {where} "
                "(torchvision layout)"
            ) from None
    if name == "stl10":
        images, labels = np.asarray(ds.data), np.asarray(ds.labels)  # already (N, C, H, W)
    elif name == "fashion_mnist":
        images, labels = ds.data.numpy()[:, None], ds.targets.numpy()
    else:
        images, labels = np.asarray(ds.data).transpose(0, 3, 1, 2), np.asarray(ds.targets)
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (torchvision's download errors span several)."""
    return " ".join(str(e).split())


def _download_footprint(name: str) -> list[str]:
    """What torchvision's download of ``name`` creates under the data root (folders and
    archives), deepest first: removed again when the download fails."""
    import torchvision.datasets as tvd

    if name == "fashion_mnist":
        folder = tvd.FashionMNIST.__name__  # MNIST-style datasets: <root>/<class name>/raw
        return [f"{folder}/raw", f"{folder}/processed", folder]
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "stl10": tvd.STL10}[name]
    return [cls.base_folder, cls.filename]


def _remove_new(root: Path, footprint: list[str], existed: set[str]) -> None:
    """Remove the entries of ``footprint`` under ``root`` that did not exist before (``existed``):
    a failed download leaves no empty or half-downloaded files in the data root, while folders
    and files that were there before stay."""
    import shutil

    for rel in footprint:
        path = root / rel
        if rel in existed or not os.path.lexists(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@functools.lru_cache(maxsize=4)
def _full_arrays_cached(
    name: str, split: str, root: str, npz_key: tuple | None, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    if npz_key is not None:
        path, mtime, test_size, seed = npz_key
        images, labels, _ = _read_npz(path, mtime)
        train_idx, test_idx = _npz_split(labels, test_size, seed)
        idx = train_idx if split == "train" else test_idx
        images = np.ascontiguousarray(images[idx].transpose(0, 3, 1, 2))
        labels = labels[idx]
    else:
        images, labels = _torchvision_arrays(name, split, Path(root), download)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _full_arrays(
    spec: DatasetSpec, split: str, params: Params, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The whole split (before subsetting) as numpy uint8 (N, C, H, W) and int64 (N,)."""
    _check_split(spec, split)
    root = _root(params)
    npz_key = None
    if spec.kind == "npz":
        path = root / spec.location
        npz_key = (
            str(path),
            path.stat().st_mtime_ns,
            spec.options["test_size"],
            spec.options["split_seed"],
        )
    return _full_arrays_cached(spec.name, split, str(root), npz_key, download)


def _subset(split: str, params: Params) -> tuple[str, int | None]:
    """The setting that sizes ``split``'s subset and its value: "train" and STL-10's
    "train+unlabeled" both take ``data.train_subset``."""
    key = "test_subset" if split == "test" else "train_subset"
    return f"data.{key}", getattr(params.data, key)


def subset_indices(
    labels: np.ndarray, split: str, params: Params, *, dataset: str | None = None
) -> np.ndarray:
    """Sorted indices of the configured stratified subset of a split (all when unset).

    A subset larger than the split is a ``DataError`` naming ``dataset``, the split and both
    sizes: taking the whole split instead would run, and label, a different experiment than
    the one configured."""
    (key, size), n = _subset(split, params), len(labels)
    if size is not None and size > n:
        name = f"dataset {dataset!r}" if dataset else "the dataset"
        raise DataError(
            f"{key}={size} exceeds the {n} images of {name}, split {split!r} "
            f"(set at most {n}, or null for the whole split)"
        )
    return stratified_subset(labels, size, SUBSET_SEED)


def load_tensors(
    name: str, split: str, params: Params, *, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, C, H, W), labels int64 (N,))`` of an in-memory dataset's split, with
    the configured subset applied. Raises ``DataError`` for ImageFolder datasets."""
    import torch

    spec = get_spec(name, params)
    if not spec.in_memory:
        raise DataError(f"dataset {name!r} ({spec.kind}) cannot be loaded into memory")
    images, labels = _full_arrays(spec, split, params, download)
    idx = subset_indices(labels, split, params, dataset=name)
    return torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy())


class TensorImageDataset:
    """``(transform(images[i]), labels[i])`` over uint8 (N, C, H, W) images (a torch Dataset)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if images.dtype.is_floating_point or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"uint8 (N, C, H, W) images and (N,) labels expected, got "
                f"{images.dtype} {tuple(images.shape)}, {tuple(labels.shape)}"
            )
        self.images, self.labels, self.transform = images, labels, transform
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.images[i]
        return (self.transform(img) if self.transform else img), int(self.labels[i])


def _imagefolder(spec: DatasetSpec, split: str, params: Params) -> Any:
    """torchvision ImageFolder over ``imagenet100/{train,val}`` with only the 100 classes."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import pil_loader
    from torchvision.transforms.v2.functional import pil_to_tensor

    folder = _root(params) / spec.location / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise DataError(
            f"ImageNet-100 {split} folder not found: {folder} (expected "
            f"{folder}/<wnid>/<image> for the 100 wnids in vssl/data/imagenet100_classes.txt)"
        )
    wanted = list(spec.classes)
    missing = [w for w in wanted if not (folder / w).is_dir()]
    if missing:
        raise DataError(
            f"ImageNet-100: {len(missing)} of 100 class folders missing under {folder}, e.g. "
            f"{', '.join(missing[:5])}"
        )

    class _IN100(ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            return wanted, {w: i for i, w in enumerate(wanted)}

    def loader(path: str) -> torch.Tensor:
        # PIL (RGB) -> uint8 (3, H, W); torchvision.io's decoders are deprecated since 0.29.
        return pil_to_tensor(pil_loader(path))

    return _IN100(str(folder), loader=loader)


def build_dataset(
    name: str,
    split: str,
    params: Params,
    transform: Callable[[torch.Tensor], Any] | None = None,
    *,
    download: bool = False,
) -> Dataset:
    """A Dataset of ``(transform(uint8 C x H x W tensor), label)`` (the tensor itself when no
    transform) for ``split`` with the configured stratified subset applied."""
    from torch.utils.data import Subset

    spec = get_spec(name, params)
    if spec.in_memory:
        images, labels = load_tensors(name, split, params, download=download)
        return TensorImageDataset(images, labels, transform)
    _check_split(spec, split)
    ds = _imagefolder(spec, split, params)
    ds.transform = transform
    idx = subset_indices(np.asarray(ds.targets), split, params, dataset=name)
    if len(idx) == len(ds):
        return ds
    sub = Subset(ds, idx.tolist())
    sub.targets = [ds.targets[i] for i in idx]  # type: ignore[attr-defined]
    return sub


def dataset_labels(ds: Any) -> np.ndarray:
    """Labels of a dataset built by :func:`build_dataset`, without decoding images."""
    return np.asarray(ds.targets, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# manifests


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_files(spec: DatasetSpec, params: Params) -> list[Path]:
    """The dataset's files under the data root (for checksums)."""
    root = _root(params)
    loc = root / spec.location
    if spec.kind == "npz":
        return [loc]
    if not loc.is_dir():
        return []
    return sorted(p for p in loc.rglob("*") if p.is_file() and not p.name.startswith("."))


def _counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    out = {c: int((labels == i).sum()) for i, c in enumerate(classes)}
    if (labels < 0).any():
        out["<unlabeled>"] = int((labels < 0).sum())
    return out


def prepare(name: str, params: Params, *, download: bool = True) -> dict[str, Any]:
    """Verify (downloading when missing and possible) a dataset; return its manifest.

    The manifest holds the image shape, classes, mean/std, per-split counts (whole split and
    after the configured subset, per class), the subset settings and sha256 checksums of the
    source files (ImageFolder trees: one sha256 over the sorted ``relative path, size`` listing,
    since hashing ~130k JPEGs would take longer than the pretraining of a smoke run).
    """
    spec = get_spec(name, params)
    root = _root(params)
    splits: dict[str, Any] = {}
    for split in spec.splits:
        if spec.in_memory:
            _, labels = _full_arrays(spec, split, params, download)
            labels = np.asarray(labels)
        else:
            labels = dataset_labels(_imagefolder(spec, split, params))
        idx = subset_indices(labels, split, params, dataset=name)
        splits[split] = {
            "full_count": int(len(labels)),
            "count": int(len(idx)),
            "per_class": _counts(labels[idx], spec.classes),
        }
    files = source_files(spec, params)
    if spec.in_memory:
        checksums = {str(p.relative_to(root)): _sha256(p) for p in files}
    else:
        listing = "\n".join(f"{p.relative_to(root)}\t{p.stat().st_size}" for p in files)
        checksums = {
            f"{spec.location}/<listing of {len(files)} files>": hashlib.sha256(
                listing.encode()
            ).hexdigest()
        }
    return {
        "format_version": MANIFEST_VERSION,
        "dataset": spec.name,
        "kind": spec.kind,
        "location": spec.location,
        "image_shape": list(spec.image_shape),
        "num_classes": spec.num_classes,
        "classes": list(spec.classes),
        "preset": spec.preset,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "pretrain_split": spec.pretrain_split,
        "splits": splits,
        "subset": {
            "train_subset": params.data.train_subset,
            "test_subset": params.data.test_subset,
            "seed": SUBSET_SEED,
        },
        "split": dict(spec.options) or None,
        "sha256": checksums,
    }
