"""``DIR/checkpoint.pt``: one ``torch.save`` dict, written atomically, read back safely.

``checkpoint.pt`` is written once, when the run completes; until then the run's state lives in
``DIR/checkpoint.partial.pt`` (the same format, ``complete`` false), which ``--resume`` continues
from and which is removed once ``checkpoint.pt`` is written.

Keys (``FORMAT_VERSION`` 1; the dict is assembled by
:func:`vssl.train.records.checkpoint_contents`)::

    format_version, method, variant, dataset, seed, epoch (completed epochs), total_epochs,
    complete, config (resolved Params as a dict), fingerprint (see
    vssl.train.plan.training_fingerprint), augment (the augmentation path: batched, split or
    per_sample; a resume on another path warns), data_spec (name, image_size, channels, classes,
    num_classes, mean, std, preset), model (Method state dict: student, teacher, heads),
    optimizer, scheduler, online_probe ({"model", "optimizer"}; None for untrained methods),
    rng (python, numpy, torch, cuda, sampler), global_step, images_seen, train_time_s,
    wall_time_s, monitor_time_s, checkpoint_time_s, history (rows of history.csv), terms (the
    method's loss terms), diagnostics (its log-only values), final_metrics (metrics.json's
    content once complete), mlflow_run_id, git_commit, versions, world_size

Everything in it is a tensor, number, string, list or dict, so it loads with
``torch.load(weights_only=True)`` (no arbitrary unpickling). The numpy RNG state is stored as a
plain dict (``np.random.get_state(legacy=False)`` with its key array as a list).

:func:`method_from_checkpoint` rebuilds the trained method with
:func:`vssl.train.assembly.build_method` (the name is also importable from here, as
``benchmarks/vssl_dynamics.py`` does).
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vssl.config import ConfigError
from vssl.io import torch_save
from vssl.train.assembly import build_method

if TYPE_CHECKING:
    from vssl.config import Params
    from vssl.methods import Method

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"  # a complete run (the declared output)
PARTIAL_CHECKPOINT_NAME = "checkpoint.partial.pt"  # an unfinished run's state, same format
REQUIRED_KEYS = (
    "format_version",
    "method",
    "dataset",
    "seed",
    "epoch",
    "config",
    "model",
    "optimizer",
    "scheduler",
    "online_probe",
    "rng",
    "mlflow_run_id",
    "git_commit",
    "versions",
)


class CheckpointError(ConfigError):
    """A missing, corrupt or mismatched checkpoint (a ``ConfigError``: the CLI exits 2)."""


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint file torch cannot read back (truncated, overwritten, not a torch file)."""


class NonFiniteCheckpointError(CheckpointError):
    """A checkpoint whose weights hold NaN or inf: readable, but nothing can continue from it."""


def check_finite_weights(state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise :class:`NonFiniteCheckpointError` naming the tensors of the state dict ``state``
    that hold NaN or inf (a diverged run saved before its guard fired, or a corrupted file):
    features from them would be NaN, and training from them stays NaN."""
    bad = [
        name
        for name, t in state.items()
        if isinstance(t, torch.Tensor)
        and (t.is_floating_point() or t.is_complex())
        and not bool(torch.isfinite(t).all())
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise NonFiniteCheckpointError(
            f"{source}: weights hold non-finite values (NaN/inf) in {len(bad)} tensor(s): {shown}"
        )


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) RNG states, ``weights_only``-loadable."""
    np_state = np.random.get_state(legacy=False)
    np_state = {
        **np_state,
        "state": {
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
        },
    }
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np_state,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where devices exist)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = {
        "key": np.asarray(np_state["state"]["key"], dtype=np.uint32),
        "pos": np_state["state"]["pos"],
    }
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def save_checkpoint(path: str | Path, ckpt: Mapping[str, Any]) -> None:
    """Write ``ckpt`` atomically (temporary file + rename) after checking its required keys."""
    missing = [k for k in REQUIRED_KEYS if k not in ckpt and k != "format_version"]
    if missing:
        raise ValueError(f"checkpoint is missing keys {missing}")
    torch_save(path, {"format_version": FORMAT_VERSION, **ckpt})


def _damaged_member(path: Path) -> str | None:
    """The first member of the checkpoint's zip archive whose data fails its CRC-32, or None.

    ``torch.load`` never checks the checksums its zip writer stores, so flipped bytes inside a
    tensor load without complaint (and give features of 1e25); reading every member through
    ``zipfile`` checks them, about 0.1 s per 50 MB here. A file that is not a zip archive at all is
    left to ``torch.load``'s own error."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except Exception:  # a damaged directory or header: torch.load reports it in its own words
        return None


def _load_reason(e: Exception, limit: int = 120) -> str:
    """A short reason from ``torch.load``'s error: its first sentence, cut at a word.

    torch's weights-only errors open with advice to retry with ``weights_only=False`` (wrong for
    a damaged file, and it unpickles arbitrary code): only the unpickler's own words are kept."""
    text = str(e).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    # torch's own advice follows the first sentence ("This is an internal miniz error. ...")
    line = line.split(". ", 1)[0].rstrip(".")
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + " ..."
    return line or type(e).__name__


def load_checkpoint(path: str | Path, expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; ``expect`` (e.g. ``{"method": "vssl", "dataset": ...}``)
    lists values that must match. Raises :class:`CheckpointError` for a missing, unreadable,
    incomplete, wrong-version or mismatched file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        if path.name == CHECKPOINT_NAME and (path.parent / PARTIAL_CHECKPOINT_NAME).is_file():
            raise CheckpointError(
                f"checkpoint not found: {path}; the run is unfinished ({PARTIAL_CHECKPOINT_NAME} "
                "is there): finish it with `vssl pretrain ... --resume`"
            )
        raise CheckpointError(f"checkpoint not found: {path}")
    if (damaged := _damaged_member(path)) is not None:
        raise UnreadableCheckpointError(
            f"{path}: corrupt checkpoint: the CRC-32 of {damaged} does not match its contents "
            "(the file was damaged after it was written)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle errors, disallowed globals...
        raise UnreadableCheckpointError(
            f"{path}: corrupt or unreadable checkpoint (truncated, damaged or not written by "
            f"vssl; torch.load: {_load_reason(e)})"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a vssl checkpoint (a {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a vssl checkpoint (missing keys {missing})")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {ckpt['format_version']}, this code reads {FORMAT_VERSION}"
        )
    for key, want in (expect or {}).items():
        # checkpoints written before variants existed name their method only
        have = ckpt.get(key, ckpt.get("method")) if key == "variant" else ckpt.get(key)
        if have != want:
            raise CheckpointError(
                f"{path}: checkpoint is for {key}={ckpt.get(key)!r}, expected {want!r}"
            )
    return ckpt


# Settings a checkpoint's config may still hold that later versions removed because they had
# no effect (each trained method's `optimizer` block always set them): dropped when loading.
RETIRED_KEYS = {"pretrain": ("base_lr", "weight_decay")}
# Settings added later, with the value that reproduces what checkpoints written before them
# trained with: filled in when absent.
ADDED_KEYS = {("methods", "vssl"): {"variance_input": "head"}}


def params_from_checkpoint(ckpt: Mapping[str, Any]) -> Params:
    """The resolved Params the checkpoint was trained with (keys in :data:`RETIRED_KEYS`
    dropped and those in :data:`ADDED_KEYS` filled in, so checkpoints written before either
    change still load)."""
    from vssl.config import validate_tree

    config = dict(ckpt["config"])
    for section, keys in RETIRED_KEYS.items():
        if isinstance(config.get(section), Mapping):
            config[section] = {k: v for k, v in config[section].items() if k not in keys}
    for (section, name), defaults in ADDED_KEYS.items():
        block = (
            config.get(section, {}).get(name) if isinstance(config.get(section), Mapping) else None
        )
        if isinstance(block, Mapping) and any(k not in block for k in defaults):
            config[section] = {**config[section], name: {**defaults, **block}}
    try:
        return validate_tree(config, "checkpoint config")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def method_from_checkpoint(ckpt: Mapping[str, Any]) -> tuple[Method, Params]:
    """Rebuild the trained Method on CPU (eval mode) and its Params from a loaded checkpoint."""
    params = params_from_checkpoint(ckpt)
    spec = ckpt.get("data_spec")
    if not spec:
        raise CheckpointError("checkpoint has no data_spec (channels, image_size)")
    method, _ = build_method(ckpt["method"], params, spec)
    try:
        method.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint weights do not fit method {ckpt['method']!r}: {str(e)[:300]}"
        ) from None
    return method.eval(), params
