"""Frozen features from a pretraining checkpoint: ``FEATDIR/{train,test}.npz`` (+ ``meta.json``).

The checkpoint's student backbone runs in eval mode (BatchNorm running statistics, no dropout,
no gradient) over the train and test splits with the dataset's evaluation transform only
(``vssl.augment.eval_transform``: resize, centre crop, normalise; no augmentation). For VSSL
the student's posterior gives ``(mu, logvar) = method.gaussian(x)`` as well (eval mode too).
Nothing random happens, so extracting twice on the same machine gives identical arrays.

Which settings come from where: the model (backbone, method hyperparameters) always from the
checkpoint; the data settings (``data_root datasets data extract mlflow``) from the checkpoint's
config too, unless a profile is given, in which case they come from the params file resolved
with that profile (so a pipeline run sees its params.yaml); ``--set`` overrides apply last and
may touch only those data sections. Everything is computed before anything is written, so a
failure leaves no partial output; the output folder, the checkpoint's weights (finite) and the
dataset are checked before the MLflow run starts or any image is read.
"""

from __future__ import annotations

import hashlib
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vssl.config import ConfigError
from vssl.eval.device import pick_device
from vssl.eval.features import META_FILE, SPLITS, FeatureSet, save_features

if TYPE_CHECKING:
    from vssl.config import Params
    from vssl.methods import Method

# Sections of params that extraction reads; the rest describes the model and comes from the
# checkpoint (a `--set backbone.width=...` could only produce a model that was never trained).
DATA_SECTIONS = ("data_root", "datasets", "data", "extract", "mlflow")


@dataclass
class Extraction:
    """Both splits of one extraction and the metadata stored in (and beside) them."""

    train: FeatureSet
    test: FeatureSet
    meta: dict[str, Any]
    seconds: float

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``train.npz``, ``test.npz`` and ``meta.json``, all or nothing (temporary files
        renamed into place once all three are written); returns the paths."""
        from vssl.io import staged_paths, write_json

        out_dir = Path(out_dir)
        paths = [out_dir / "train.npz", out_dir / "test.npz", out_dir / META_FILE]
        with staged_paths(paths) as (tmp_train, tmp_test, tmp_meta):
            save_features(tmp_train, self.train)
            save_features(tmp_test, self.test)
            write_json(tmp_meta, dict(self.meta))
        return paths


def extraction_params(
    ckpt: Mapping[str, Any],
    params_path: str | Path | None = None,
    profile: str | None = None,
    overrides: Sequence[str] = (),
) -> Params:
    """The Params extraction runs with (rules in the module docstring).

    Raises ``ConfigError`` for an override outside :data:`DATA_SECTIONS` or an invalid result.
    """
    from vssl.config import apply_overrides, load_params, parse_override, validate_tree
    from vssl.train.checkpoint import params_from_checkpoint

    tree = params_from_checkpoint(ckpt).to_dict()
    if profile is not None:
        # Loaded first: an unknown profile is an error, not a warning followed by one.
        file_params = load_params(params_path or "params.yaml", profile=profile).to_dict()
        if profile != tree["profile"]:
            warnings.warn(
                f"checkpoint was trained under profile {tree['profile']!r}; taking the data "
                f"settings of profile {profile!r}",
                stacklevel=2,
            )
        tree.update({k: file_params[k] for k in DATA_SECTIONS})
    for text in overrides:
        key = parse_override(text)[0][0]
        if key not in DATA_SECTIONS:
            raise ConfigError(
                f"--set {text!r}: extraction takes {key!r} from the checkpoint; only "
                f"{', '.join(DATA_SECTIONS)} can be overridden"
            )
    tree = apply_overrides(tree, list(overrides))
    source = "checkpoint config" if profile is None else str(params_path or "params.yaml")
    if overrides:
        source += " with --set overrides"
    # One line per offending key, as every other command reports it (not pydantic's dump).
    params = validate_tree(tree, f"extraction params ({source})")
    # A relative SQLite tracking store is the repository's (the params file's folder), as for
    # every other stage, whichever config the mlflow section came from.
    return params.with_base_dir(Path(params_path or "params.yaml").parent)


def check_feature_dir(out_dir: str | Path) -> Path:
    """Check, creating nothing, that the feature folder ``out_dir`` and its files can be written
    (:class:`vssl.io.OutputPathError`, a ``ConfigError``, otherwise)."""
    from vssl.io import check_writable_dir, check_writable_file

    out_dir = check_writable_dir(out_dir, "feature folder")
    for name in (*(f"{s}.npz" for s in SPLITS), META_FILE):
        if (out_dir / name).exists():
            check_writable_file(out_dir / name, "feature file")
    return out_dir


@torch.inference_mode()
def extract_features(
    method: Method,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    *,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_workers: int = 0,
    desc: str = "extract",
    progress: bool | None = None,
) -> FeatureSet:
    """Run ``method.backbone`` (and ``method.gaussian``) over ``dataset`` in order.

    ``dataset`` yields (image, label); ``batch_transform`` (if any) is applied to each collated
    batch on ``device`` (in-memory uint8 datasets: one vectorised transform per batch instead of
    one per image). ``progress=None`` shows a tqdm bar only on a terminal.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    method.eval()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    feats: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    mus: list[np.ndarray] = []
    logvars: list[np.ndarray] = []
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=not show) as bar:
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if batch_transform is not None:
                x = batch_transform(x)
            feats.append(method.backbone(x).float().cpu().numpy())
            gauss = method.gaussian(x)
            if gauss is not None:
                mus.append(gauss[0].float().cpu().numpy())
                logvars.append(gauss[1].float().cpu().numpy())
            labels.append(torch.as_tensor(y).cpu().numpy())
            bar.update(len(x))
    if not feats:
        raise ValueError(f"{desc}: the dataset is empty")
    return FeatureSet(
        np.concatenate(feats),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(mus) if mus else None,
        np.concatenate(logvars) if logvars else None,
    )


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ExtractionPlan:
    """Everything checked and built, nothing run yet: see :func:`plan_extraction`."""

    ckpt: Mapping[str, Any]
    dataset: str
    params: Params
    method: Method
    splits: dict[str, Any]
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None
    num_classes: int
    classes: tuple[str, ...]
    checkpoint_path: str | Path | None = None

    def run(self, device: torch.device | None = None, progress: bool | None = None) -> Extraction:
        """Extract both splits (nothing written; see :meth:`Extraction.write`)."""
        torch.set_flush_denormal(True)  # denormals slow CPU convolutions ~3x (see the engine)
        device = device or pick_device()
        self.method.to(device)
        # In-memory uint8 batches are light to collate: worker processes would only add cost.
        workers = 0 if self.batch_transform is not None else self.params.data.workers()
        start = time.perf_counter()
        out = {
            s: extract_features(
                self.method,
                ds,
                self.params.extract.batch_size,
                device,
                batch_transform=self.batch_transform,
                num_workers=workers,
                desc=f"extract {self.dataset} {s}",
                progress=progress,
            )
            for s, ds in self.splits.items()
        }
        seconds = time.perf_counter() - start
        meta = self.meta(out["train"], out["test"])
        sets = {s: FeatureSet(f.features, f.labels, f.mu, f.logvar, meta) for s, f in out.items()}
        return Extraction(sets["train"], sets["test"], meta, seconds)

    def meta(self, train: FeatureSet, test: FeatureSet) -> dict[str, Any]:
        """Provenance stored in both .npz files and meta.json (deterministic: no timestamps)."""
        ckpt = self.ckpt
        meta: dict[str, Any] = {
            "dataset": self.dataset,
            "pretrain_dataset": ckpt["dataset"],
            "method": ckpt["method"],
            "variant": ckpt.get("variant", ckpt["method"]),
            "seed": int(ckpt["seed"]),
            "profile": self.params.profile,
            "epoch": int(ckpt["epoch"]),
            "mlflow_run_id": ckpt.get("mlflow_run_id"),
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "feature_dim": train.dim,
            "latent_dim": int(train.mu.shape[1]) if train.mu is not None else None,
            "n_train": train.n,
            "n_test": test.n,
        }
        if self.checkpoint_path is not None:
            meta["checkpoint"] = str(self.checkpoint_path)
            meta["checkpoint_sha256"] = file_sha256(self.checkpoint_path)
        return meta


def plan_extraction(
    ckpt: Mapping[str, Any],
    dataset: str,
    params: Params,
    *,
    checkpoint_path: str | Path | None = None,
    allow_dataset_mismatch: bool = False,
) -> ExtractionPlan:
    """Check and build everything before any forward pass (``ConfigError`` on a problem).

    Cheapest first, the dataset's files last: the checkpoint's weights must be finite (checked
    first); the dataset must be known and be the checkpoint's own (unless
    ``allow_dataset_mismatch``) with the channel count the backbone was built for; the weights
    must fit the checkpoint's method; the dataset's files must exist and be readable.
    """
    from vssl import data
    from vssl.augment import eval_transform, get_preset
    from vssl.train.checkpoint import check_finite_weights, method_from_checkpoint

    check_finite_weights(ckpt["model"], str(checkpoint_path or "checkpoint"))
    params.check_dataset(dataset)
    trained_on = ckpt["dataset"]
    if dataset != trained_on and not allow_dataset_mismatch:
        raise ConfigError(
            f"checkpoint was pretrained on {trained_on!r}, not {dataset!r} "
            "(pass --allow-dataset-mismatch to extract transfer features)"
        )
    spec = data.get_spec(dataset, params)
    trained_spec = ckpt.get("data_spec") or {}
    if trained_spec and int(trained_spec["channels"]) != spec.channels:
        raise ConfigError(
            f"{dataset!r} has {spec.channels}-channel images but the checkpoint's backbone "
            f"takes {trained_spec['channels']} ({trained_on!r})"
        )
    if ckpt.get("complete") is False:
        warnings.warn(
            f"checkpoint stopped at epoch {ckpt['epoch']} of {ckpt.get('total_epochs')}: "
            "extracting features from an unfinished run",
            stacklevel=2,
        )
    method, _ = method_from_checkpoint(ckpt)  # the weights fit the method, before the data
    transform = eval_transform(get_preset(spec.preset), spec.mean, spec.std)
    # In-memory datasets yield uint8 tensors of one size: transform whole batches on the device.
    per_sample = None if spec.in_memory else transform
    splits = {s: data.build_dataset(dataset, s, params, transform=per_sample) for s in SPLITS}
    return ExtractionPlan(
        ckpt,
        dataset,
        params,
        method,
        splits,
        transform if spec.in_memory else None,
        spec.num_classes,
        tuple(spec.classes),
        checkpoint_path,
    )
