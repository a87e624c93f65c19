"""MLflow tracking shared by every stage: one parent run per (dataset, method, seed) pretraining.

``start_run(params, stage=..., dataset=..., method=..., seed=..., parent_run_id=None)`` is a
context manager that creates (or, with ``run_id``, reopens) an MLflow run, tags it with
``dataset method seed profile stage git_commit`` and, for a new run, logs every resolved
parameter flattened to dotted keys (``pretrain.base_lr``), the seed, the library versions and
the host (:func:`host_environment`: CPU model and torch's thread count, which change CPU results
in the last digits).
Child stages (extract, probe) pass the pretraining run id as ``parent_run_id`` (it is stored in
``checkpoint.pt``); the child then carries the ``mlflow.parentRunId`` tag, which is how MLflow
nests runs (the fluent ``parent_run_id=`` argument would require the parent to be active).

Several pipeline jobs write to one SQLite store at once. SQLite serialises writers and a busy
writer makes the others fail with "database is locked", so every MLflow call here goes through
:func:`with_retry` (exponential back-off with jitter). The first connection to a new store
creates its schema (alembic migrations), which races between processes; that step and the
experiment creation run under a file lock beside the database file.

Inside a run, ``log_metrics``, ``log_params``, ``log_artifact`` and ``set_tags`` log to the active
run. Only the main process of a distributed job should call any of this.

``mlflow.enabled: false`` (``--no-mlflow``) turns tracking off: ``start_run`` then yields None
without importing ``mlflow`` or touching a store, and the logging functions do nothing outside a
run opened by ``start_run`` (so they never import ``mlflow`` nor let it start a run implicitly).
MLflow is imported only when a run is opened, so stages run where it is not installed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vssl.config import flatten

if TYPE_CHECKING:
    from mlflow import ActiveRun

    from vssl.config import Params

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_ATTEMPTS = 12
RETRY_BASE_S = 0.1
RETRY_MAX_S = 5.0
_MAX_PARAM_LEN = 6000  # MLflow's limit on a parameter value
_LOCK_TIMEOUT_S = 120.0
_open_runs = 0  # runs opened by start_run and not yet ended (this process)


def run_is_open() -> bool:
    """Whether a run opened by :func:`start_run` is active (False when MLflow is disabled)."""
    return _open_runs > 0


def _is_transient(e: BaseException) -> bool:
    """True for SQLite contention errors (possibly wrapped in an MlflowException)."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(
        s in text for s in ("database is locked", "operationalerror", "database table is locked")
    )


def with_retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``; on "database is locked"/OperationalError wait
    ``min(RETRY_MAX_S, RETRY_BASE_S * 2**i) * U(0.5, 1.5)`` and try again (12 attempts, about
    half a minute in all); other errors propagate at once."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not _is_transient(e) or attempt == RETRY_ATTEMPTS - 1:
                raise
            delay = min(RETRY_MAX_S, RETRY_BASE_S * 2**attempt) * random.uniform(0.5, 1.5)
            log.debug("MLflow store busy (%s); retry %d in %.2fs", e, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _git(args: list[str], repo: Path | None = None) -> str | None:
    """stdout of ``git ARGS`` in ``repo`` (default: the repository holding this package), or
    None when git or the checkout is missing."""
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=repo or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.cache
def git_commit() -> str | None:
    """The commit of the repository holding this package (None outside a git checkout)."""
    out = _git(["rev-parse", "HEAD"])
    return (out or "").strip() or None


@functools.cache
def git_dirty(repo: Path | None = None) -> bool | None:
    """Whether tracked files of the repository holding this package (or ``repo``) differ from its
    commit, so that the code that ran is not exactly ``git_commit``'s; None outside a git
    checkout."""
    out = _git(["status", "--porcelain", "--untracked-files=no"], repo)
    return None if out is None else bool(out.strip())


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("vssl", "torch", "torchvision", "accelerate", "kornia", "numpy", "mlflow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's word for it)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_environment() -> dict[str, str | int]:
    """What on this host shapes CPU results beyond the seed: the CPU model (oneDNN picks its
    kernels by instruction set) and torch's intra-op thread count (it changes the order of
    floating-point sums, so the same seed gives the same numbers only with the same count)."""
    import torch

    return {"cpu": cpu_model(), "torch_threads": torch.get_num_threads()}


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside the database (``<db dir>/mlartifacts``) instead of
    MLflow's default ``./mlruns`` under whatever directory the job ran in."""
    db = _sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / "mlartifacts").as_uri()


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock", timeout=_LOCK_TIMEOUT_S):
        yield


def configure(params: Params) -> str:
    """Point MLflow at ``params.tracking_uri()`` and return the id of ``mlflow.experiment``
    (created, with its artifact root, if missing)."""
    import mlflow
    from mlflow import MlflowClient

    uri = params.tracking_uri()
    mlflow.set_tracking_uri(uri)
    name = params.mlflow.experiment
    with _store_lock(uri):
        client = MlflowClient(uri)  # the first connection creates the schema: under the lock
        exp = with_retry(client.get_experiment_by_name, name)
        if exp is None:
            exp_id = with_retry(
                client.create_experiment, name, artifact_location=_artifact_root(uri)
            )
        else:
            exp_id = exp.experiment_id
    with_retry(mlflow.set_experiment, experiment_id=exp_id)
    return exp_id


def run_tags(
    params: Params, stage: str, dataset: str, method: str, seed: int, variant: str | None = None
) -> dict[str, str]:
    """Tags of every run: ``method`` is the registry method, ``variant`` the grid entry (the
    method's own name unless the run trains a variant)."""
    return {
        "stage": stage,
        "dataset": dataset,
        "method": method,
        "variant": variant or method,
        "seed": str(seed),
        "profile": params.profile,
        "git_commit": git_commit() or "unknown",
        "git_dirty": {True: "true", False: "false", None: "unknown"}[git_dirty()],
    }


def _run_exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        with_retry(client.get_run, run_id)
    except MlflowException as e:
        if _is_transient(e):
            raise
        return False
    return True


@contextmanager
def start_run(
    params: Params,
    *,
    stage: str,
    dataset: str,
    method: str,
    seed: int,
    variant: str | None = None,
    parent_run_id: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
) -> Iterator[ActiveRun | None]:
    """Create an MLflow run (or reopen ``run_id``, when the store has it) and make it active.

    A new run gets the tags of :func:`run_tags`, ``mlflow.parentRunId`` when ``parent_run_id`` is
    given, and every resolved parameter (flattened), ``seed`` and ``version.<lib>`` as params.
    The run ends FINISHED, or FAILED (KILLED on Ctrl-C, SIGINT or SIGTERM: a KeyboardInterrupt)
    if the block raises. With ``mlflow.enabled`` false it yields None and does nothing else.
    """
    global _open_runs
    if not params.mlflow.enabled:
        yield None
        return
    import mlflow
    from mlflow import MlflowClient

    exp_id = configure(params)
    client = MlflowClient(params.tracking_uri())
    tags = run_tags(params, stage, dataset, method, seed, variant)
    if run_id is not None and not _run_exists(client, run_id):
        log.warning(
            "MLflow run %s not found in %s; starting a new run", run_id, client.tracking_uri
        )
        run_id = None
    if run_id is None:
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        name = run_name or f"{stage}-{dataset}-{variant or method}-seed{seed}"
        # Created through the client (one insert), so a retry cannot leave a duplicate run.
        run = with_retry(client.create_run, exp_id, tags=tags, run_name=name)
        run_id = run.info.run_id
        fresh = True
    else:
        fresh = False
        _tag_resume(client, run_id, tags)
    active = with_retry(mlflow.start_run, run_id=run_id)
    status = "FINISHED"
    _open_runs += 1
    try:
        if fresh:
            log_params(
                {**params.to_dict(), "seed": seed, "stage": stage, "git_commit": git_commit()}
            )
            log_params({f"version.{k}": v for k, v in library_versions().items()})
            log_params({f"env.{k}": v for k, v in host_environment().items()})
        yield active
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        _open_runs -= 1
        with_retry(mlflow.end_run, status=status)


def _tag_resume(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    """A reopened run (a resumed pretraining) records this invocation's code: ``resumes`` counts
    the reopenings and ``resume<N>.git_commit`` / ``resume<N>.git_dirty`` say what ran the later
    epochs, which the run's own ``git_commit`` (its first invocation's) would hide."""
    first = with_retry(client.get_run, run_id).data.tags
    n = int(first.get("resumes", "0") or 0) + 1
    now = {k: tags[k] for k in ("git_commit", "git_dirty")}
    with_retry(client.set_tag, run_id, "resumes", str(n))
    for k, v in now.items():
        with_retry(client.set_tag, run_id, f"resume{n}.{k}", v)
    if any(first.get(k) not in (None, v) for k, v in now.items()):
        log.warning(
            "MLflow run %s began under commit %s (dirty: %s) and resumes under %s (dirty: %s)",
            run_id,
            first.get("git_commit"),
            first.get("git_dirty"),
            now["git_commit"],
            now["git_dirty"],
        )


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _MAX_PARAM_LEN else s[: _MAX_PARAM_LEN - 3] + "..."


def log_params(params: Mapping[str, Any]) -> None:
    """Log (nested) parameters to the active run, flattened to dotted keys."""
    if not run_is_open():
        return
    import mlflow

    flat = {k: _param_value(v) for k, v in flatten(params).items()}
    items = list(flat.items())
    for i in range(0, len(items), 100):  # MLflow's batch limit
        with_retry(mlflow.log_params, dict(items[i : i + 100]))


def log_metrics(metrics: Mapping[str, float | int | None], step: int | None = None) -> None:
    """Log numeric metrics to the active run; None and non-finite values are skipped."""
    if not run_is_open():
        return
    import mlflow

    clean = {
        k: float(v)
        for k, v in metrics.items()
        if v is not None and isinstance(v, (int, float)) and math.isfinite(float(v))
    }
    if clean:
        with_retry(mlflow.log_metrics, clean, step=step)


def log_artifact(path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Copy a file into the active run's artifacts."""
    if not run_is_open():
        return
    import mlflow

    with_retry(mlflow.log_artifact, str(path), artifact_path=artifact_path)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run."""
    if not run_is_open():
        return
    import mlflow

    with_retry(mlflow.set_tags, {k: str(v) for k, v in tags.items()})
