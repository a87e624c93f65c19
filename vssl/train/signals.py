"""SIGTERM and SIGINT during pretraining: stop at a safe point, save, exit 143 or 130.

SLURM (``scancel``, preemption, the time limit), Snakemake and DVC stop a job with SIGTERM to its
processes; Ctrl-C sends SIGINT to the foreground process group. :class:`StopSignals` handles both
for the duration of a pretraining call, in two modes:

- *immediate* (planning and model assembly, before anything is written): the handler raises
  :class:`Interrupted` at once; nothing is on disk to save.
- *deferred* (from the start of the run, :meth:`StopSignals.defer`): the handler only records
  the signal; the engine looks at it before each training micro-step (and the first step of each
  epoch), saves the last completed epoch's state and raises :class:`Interrupted` there. Further
  signals while it stops are ignored (SIGKILL is the way to stop at once).

:class:`Interrupted` is a ``KeyboardInterrupt``, so the MLflow run ends KILLED
(:func:`vssl.tracking.start_run`) and ``except Exception`` blocks do not swallow it. The CLI
prints its one-line :meth:`Interrupted.message` and exits with :attr:`Interrupted.exit_code`
(128 + the signal number: 130 for SIGINT, 143 for SIGTERM, the shell's conventions).

Handlers are installed only in the main thread of the process that entered the block; forked
children (DataLoader workers) inherit them but ignore signals: the main process stops them.

A trainer started by a launcher (``accelerate launch``, ``torchrun``) also asks the kernel for a
SIGTERM when the launcher dies (:func:`stop_with_launcher`): a launcher killed outright (SIGKILL,
the OOM killer) otherwise leaves its trainer running as an orphan that nobody stops, which holds
the run folder's lock and keeps training after the job is gone. With it, the orphan saves its
last completed epoch and exits like any stopped run.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Set in the trainer's environment by `accelerate launch` (every launcher) and torchrun.
LAUNCHER_ENV = ("ACCELERATE_USE_CPU", "TORCHELASTIC_RUN_ID")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("vssl.train")


def launched_by_launcher() -> bool:
    """Whether this process was started by ``accelerate launch`` or ``torchrun``."""
    return any(k in os.environ for k in LAUNCHER_ENV)


def stop_with_launcher() -> bool:
    """Have the kernel send this process SIGTERM when its parent, the launcher, dies (Linux
    ``PR_SET_PDEATHSIG``); only for a launched trainer, since a plain ``vssl pretrain`` run under
    ``nohup`` must outlive the shell that started it. Returns whether it was set."""
    if not (sys.platform.startswith("linux") and launched_by_launcher()):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols, libc's included
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        log.warning("cannot ask to be stopped with the launcher (%s); an orphan would go on", e)
        return False
    if os.getppid() != parent:  # the launcher died before the request: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
    return True


class Interrupted(KeyboardInterrupt):
    """Pretraining stopped on a signal. ``epoch`` (1-based, the epoch in progress) and ``step``
    (optimiser steps of it completed) say where; ``checkpoint`` is the file to resume from
    (None: none exists) and ``checkpoint_epoch`` the completed epochs it holds; ``note``
    explains a missing checkpoint."""

    def __init__(
        self,
        signum: int,
        *,
        epoch: int | None = None,
        step: int | None = None,
        checkpoint: str | None = None,
        checkpoint_epoch: int | None = None,
        note: str = "",
    ) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.epoch, self.step = epoch, step
        self.checkpoint, self.checkpoint_epoch = checkpoint, checkpoint_epoch
        self.note = note

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def message(self) -> str:
        """One line: where training stopped and what to resume from."""
        where = f"interrupted by {self.signal_name}"
        if self.epoch is None:
            return f"{where} before training started; nothing was written"
        where += f" at epoch {self.epoch} step {self.step}"
        if self.checkpoint is None:
            return f"{where}; no checkpoint ({self.note or 'nothing to resume'})"
        return (
            f"{where}; checkpoint {self.checkpoint} "
            f"(epoch {self.checkpoint_epoch} completed; resume with --resume)"
        )


class StopSignals:
    """Context manager handling SIGTERM and SIGINT (see the module docstring); restores the
    previous handlers on exit. ``received`` is the first signal's number (None: none)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferred = False
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def defer(self) -> None:
        """From now on only record signals; the caller checks :attr:`received`."""
        self.deferred = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked worker: the main process decides
            return
        if self.received is not None:
            return  # already stopping
        self.received = signum
        if not self.deferred:
            raise Interrupted(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            stop_with_launcher()  # after the handlers: its SIGTERM takes the usual way out
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
