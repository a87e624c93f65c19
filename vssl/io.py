"""Atomic file output (write to a temporary file in the same folder, then rename) and the
output-path checks every stage runs before any work.

A killed process therefore never leaves a half-written checkpoint, feature file or table.
:func:`check_writable_dir` and :func:`check_writable_file` let a command refuse an output path
it could never write (an existing file where a folder must go, a parent that is a file, a folder
without write permission) before it loads data or starts an MLflow run: they raise
:class:`OutputPathError`, a ``ConfigError``, which the CLI prints as one line and exits 2 on.
They create nothing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vssl.config import ConfigError


class OutputPathError(ConfigError):
    """An output path that cannot be written; the message (one line) names the path."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a ``mkdir -p`` would start in)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_folder(folder: Path, target: str) -> None:
    """``folder`` is, or can be created as, a writable folder; ``target`` names what the
    caller writes there, for the message."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise OutputPathError(f"cannot write {target}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {target}: {base} is not writable")


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check that ``path`` is (or can be created as) a folder this process can write in.

    Raises :class:`OutputPathError` when ``path`` exists as a file, when one of its parents is
    a file, or when the folder (or the existing ancestor it would be created in) is not
    writable. Creates nothing; returns ``Path(path)``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} exists and is a file, not a folder")
    _check_folder(path, f"{what} {path}")
    return path


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Check that ``path`` can be written as a file (atomically, through a temporary file in its
    folder): it is not a folder, and its folder is (or can be created as) a writable folder.

    Raises :class:`OutputPathError`; creates nothing; returns ``Path(path)``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder, not a file")
    _check_folder(path.parent, f"{what} {path}")
    return path


def _temp_prefix(path: Path) -> str:
    """Every temporary file written for ``path`` is ``.NAME.<random><suffix>`` in its folder."""
    return f".{path.name}."


def _temp_suffix(path: Path) -> str:
    return f".tmp{path.suffix}"


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` / :func:`staged_paths` leave in
    ``folder`` for the targets ``names`` when a process is killed outright (SIGKILL, power
    loss) mid-write: ``.NAME.<random>.tmp*``. Call it where no other process writes those
    targets (e.g. at the start of the one job that owns the folder). Returns what it removed."""
    import glob

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for name in names:
        target = folder / name
        pattern = glob.escape(_temp_prefix(target)) + "*" + ".tmp*"
        for stale in sorted(folder.glob(pattern)):
            if stale.is_file():
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    ``suffix`` keeps the extension for writers that insist on one (``np.savez`` adds ``.npz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=_temp_prefix(path), suffix=suffix or _temp_suffix(path)
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        os.chmod(tmp_path, _output_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _output_mode() -> int:
    """The permissions a plain open() would give a new file (mkstemp creates 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def staged_paths(paths: Iterable[str | Path]) -> Iterator[list[Path]]:
    """All-or-nothing output of several files (a table and its figures).

    Yields one temporary path per target, hidden in the target's own folder (so the final rename
    stays on one file system). When the block succeeds every temporary file is renamed onto its
    target; when it raises, the temporary files and the folders created for them are removed and
    no target is touched, so a failure never leaves a partial set of outputs behind.
    """
    targets = [Path(p) for p in paths]
    created: list[Path] = []
    temps: list[Path] = []
    try:
        for target in targets:
            missing = []
            folder = target.parent
            while not folder.exists():
                missing.append(folder)
                folder = folder.parent
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:
                    continue
                created.append(folder)
            fd, tmp = tempfile.mkstemp(
                dir=target.parent, prefix=_temp_prefix(target), suffix=_temp_suffix(target)
            )
            os.close(fd)
            temps.append(Path(tmp))
        yield list(temps)
        mode = _output_mode()
        for tmp in temps:
            os.chmod(tmp, mode)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else wrote there meanwhile
                pass
        raise


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically. When torch's zip writer fails (it reports a full disk as
    "[enforce fail at inline_container.cc...] unexpected pos ..."), raise an ``OSError`` that
    names the file and the free space left beside it."""
    import torch

    try:
        atomic_write(path, lambda p: torch.save(obj, p))
    except RuntimeError as e:
        if "inline_container" not in str(e) and "PytorchStreamWriter" not in str(e):
            raise
        free = shutil.disk_usage(Path(path).parent).free
        raise OSError(
            errno.ENOSPC if free < 2**26 else errno.EIO,
            f"torch.save failed ({free / 2**20:.1f} MiB free on that file system): "
            f"{str(e).splitlines()[0]}",
            str(path),
        ) from e
