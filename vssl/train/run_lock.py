"""One trainer per run folder: an exclusive, advisory lock on the folder itself.

Two ``vssl pretrain`` processes on one ``--out`` (a manual ``--resume`` beside the pipeline's
job, a trainer orphaned by a killed launcher) would overwrite each other's checkpoints and
delete each other's temporary files. The main process holds ``flock`` on the folder's own
descriptor for the whole run: the kernel releases it when the process ends, SIGKILL included,
so no stale lock outlives its holder, and no lock file joins the run's outputs (DVC versions
the folder). Where the file system has no ``flock`` (some network mounts) the run goes on
unlocked, with a warning.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vssl.io import OutputPathError

log = logging.getLogger(__name__)


class RunFolderBusyError(OutputPathError):
    """Another process holds the run folder's lock."""


@contextmanager
def hold_run_folder(path: str | Path) -> Iterator[None]:
    """Create ``path`` if needed and hold its lock until the block ends; raise
    :class:`RunFolderBusyError` at once if another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock
        yield
        return
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                log.warning("cannot lock %s (%s); training without the lock", path, e.strerror)
            else:
                raise RunFolderBusyError(
                    f"run folder {path} is in use by another `vssl pretrain` process; wait for "
                    "it to finish or stop it, then run again"
                ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
