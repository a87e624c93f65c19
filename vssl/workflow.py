"""The experiment grid and its output paths, for the Snakefile, `vssl table` and the tests.

One (dataset, method, seed) triple of a profile is a :class:`Run`; every file the pipeline writes
for it has one path, defined here (docs/architecture.md, "Output layout"). The Snakemake rules and
dvc.yaml spell the same patterns; tests/test_workflow.py checks that all three agree:

    data/prepared/{profile}/{dataset}.json
    runs/{profile}/{dataset}/{method}/seed{seed}/{checkpoint.pt, metrics.json, history.csv}
    features/{profile}/{dataset}/{method}/seed{seed}/{train.npz, test.npz}
    results/probes/{profile}/{dataset}/{method}/seed{seed}.json  (+ the uncertainty sidecar)
    results/table.csv, results/figures/*.png
    logs/{profile}/<stage>/...

Paths are relative to the repository root (Snakemake's and DVC's working directory) as POSIX
strings, so they can be compared with what Snakemake plans and dvc.yaml declares.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from vssl.config import KNOWN_METHODS, ConfigError, Params

TABLE = "results/table.csv"
FIGURES_DIR = "results/figures"
# One figure per question the table cannot answer at a glance.
FIGURES = {
    "accuracy": f"{FIGURES_DIR}/accuracy.png",  # probe accuracy by method and dataset, +- std
    "training_curves": f"{FIGURES_DIR}/training_curves.png",  # history.csv of every run
    "uncertainty": f"{FIGURES_DIR}/uncertainty.png",  # VSSL's predicted variance vs error
}
# The probe writes a per-sample uncertainty file next to its JSON (VSSL runs only).
UNCERTAINTY_SUFFIX = ".uncertainty.csv"

# The params sections each stage reads (dotted keys into the resolved config; `{dataset}` and
# `{method}` are filled in per job). Snakemake reruns a job when the digest of these changes;
# dvc.yaml lists the same keys as the stage's `params` (tests/test_workflow.py keeps them equal).
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare_data": ("datasets", "data"),
    "pretrain": ("datasets", "data", "backbone", "pretrain", "methods.{method}"),
    "extract_features": ("datasets", "data", "extract"),
    "probe": ("probe",),
    "table": (),
}
STAGES = tuple(STAGE_PARAMS)


def prepared_manifest(profile: str, dataset: str) -> str:
    """The manifest `vssl prepare` writes for ``dataset``."""
    return f"data/prepared/{profile}/{dataset}.json"


@dataclass(frozen=True, order=True)
class Run:
    """One cell of the grid: (dataset, method, seed) under a profile, and its files."""

    profile: str
    dataset: str
    method: str
    seed: int

    @property
    def key(self) -> str:
        """``dataset-method-seed``: DVC's matrix stage suffix (``pretrain@<key>``)."""
        return f"{self.dataset}-{self.method}-{self.seed}"

    @property
    def manifest(self) -> str:
        return prepared_manifest(self.profile, self.dataset)

    @property
    def run_dir(self) -> str:
        return f"runs/{self.profile}/{self.dataset}/{self.method}/seed{self.seed}"

    @property
    def checkpoint(self) -> str:
        return f"{self.run_dir}/checkpoint.pt"

    @property
    def metrics(self) -> str:
        return f"{self.run_dir}/metrics.json"

    @property
    def history(self) -> str:
        return f"{self.run_dir}/history.csv"

    @property
    def features_dir(self) -> str:
        return f"features/{self.profile}/{self.dataset}/{self.method}/seed{self.seed}"

    @property
    def train_features(self) -> str:
        return f"{self.features_dir}/train.npz"

    @property
    def test_features(self) -> str:
        return f"{self.features_dir}/test.npz"

    @property
    def probe(self) -> str:
        return f"results/probes/{self.profile}/{self.dataset}/{self.method}/seed{self.seed}.json"

    @property
    def uncertainty(self) -> str:
        """The probe's per-sample uncertainty sidecar (written for VSSL only)."""
        return self.probe[: -len(".json")] + UNCERTAINTY_SUFFIX

    def log(self, stage: str) -> str:
        """The log file of this run's ``stage`` (pretrain, extract_features or probe)."""
        return f"logs/{self.profile}/{stage}/{self.dataset}/{self.method}/seed{self.seed}.log"


def grid_runs(params: Params) -> list[Run]:
    """Every (dataset, method, seed) of the resolved profile's grid, in grid order."""
    g = params.grid
    return [
        Run(params.profile, d, m, int(s))
        for d, m, s in itertools.product(g.datasets, g.methods, g.seeds)
    ]


def table_outputs() -> list[str]:
    """What `vssl table` writes: the table and one PNG per figure."""
    return [TABLE, *FIGURES.values()]


def log_path(profile: str, stage: str, name: str) -> str:
    """The log file of a stage without a run (``prepare_data`` per dataset, ``table``)."""
    return f"logs/{profile}/{stage}/{name}.log"


def planned_outputs(params: Params) -> dict[str, set[str]]:
    """Stage name -> every output file the whole grid produces (logs excluded).

    This is the contract both Snakemake and dvc.yaml must meet; the tests compare each against it.
    """
    runs = grid_runs(params)
    return {
        "prepare_data": {prepared_manifest(params.profile, d) for d in params.grid.datasets},
        "pretrain": {p for r in runs for p in (r.checkpoint, r.metrics, r.history)},
        "extract_features": {p for r in runs for p in (r.train_features, r.test_features)},
        "probe": {r.probe for r in runs},
        "table": set(table_outputs()),
    }


def launch_args(gpus: int, gres: str | None = None) -> str:
    """`accelerate launch` flags for a pretraining job that holds ``gpus`` GPUs.

    gpus = 0 -> ``--cpu --num_processes 1``; gpus = 1 -> ``--num_processes 1`` (one plain
    process on the visible GPU); gpus = N > 1 -> ``--multi_gpu --num_processes N`` (DDP, one
    process per GPU). ``gres`` is the SLURM generic-resource string of the same job
    (e.g. ``gpu:2`` or ``gpu:a100:2``); when given, its GPU count must equal ``gpus``, so a
    cluster job never launches more processes than it was allocated GPUs.
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"resource gpus must be a non-negative integer, got {gpus!r}")
    if gres:
        m = re.fullmatch(r"gpu(?::[\w.]+)?:(\d+)", str(gres).strip())
        n = int(m.group(1)) if m else (1 if str(gres).strip() == "gpu" else None)
        if n is not None and n != gpus:
            raise ValueError(
                f"resource gres={gres!r} allocates {n} GPU(s) but gpus={gpus}; set both, e.g. "
                f"--set-resources pretrain:gpus={n} pretrain:gres=gpu:{n}"
            )
    # One process per job and machine; the rest (mixed precision, ...) comes from params.yaml.
    common = "--num_machines 1 --dynamo_backend no"
    if gpus == 0:
        return f"--cpu --num_processes 1 {common}"
    if gpus == 1:
        return f"--num_processes 1 {common}"
    return f"--multi_gpu --num_processes {gpus} {common}"


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def stage_params(stage: str, dataset: str | None = None, method: str | None = None) -> list[str]:
    """The dotted params keys ``stage`` reads, with ``{dataset}``/``{method}`` filled in."""
    if stage not in STAGE_PARAMS:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    if method is not None and method not in KNOWN_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(KNOWN_METHODS)}")
    return [k.format(dataset=dataset, method=method) for k in STAGE_PARAMS[stage]]


def stage_digest(
    params: Params, stage: str, dataset: str | None = None, method: str | None = None
) -> str:
    """A short hash of the resolved config that ``stage`` reads (plus the dataset's epochs).

    sha1(json(sorted {key: value for key in stage_params(stage)}))[:12]. Snakemake stores it as a
    rule param, so editing params.yaml reruns exactly the jobs whose inputs changed (the same
    rule DVC applies with the stage's `params` list).
    """
    tree = params.to_dict()
    picked = {k: _lookup(tree, k) for k in stage_params(stage, dataset, method)}
    if stage == "pretrain" and dataset is not None:
        picked["epochs"] = params.epochs_for(dataset)
    blob = json.dumps(picked, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def check_snakemake_config(config: dict[str, Any], raw: dict[str, Any]) -> None:
    """Allow ``snakemake --config profile=NAME`` and nothing else.

    Snakemake merges ``--config key=value`` into params.yaml's tree, but the `vssl` CLI each rule
    calls reads params.yaml itself, so any other override would silently not reach the jobs.
    Raises ConfigError naming the keys that differ from the file.
    """
    changed = sorted(
        k for k in set(config) | set(raw) if k != "profile" and config.get(k) != raw.get(k)
    )
    if changed:
        raise ConfigError(
            f"--config may only set `profile` (got {', '.join(changed)}); edit params.yaml or add "
            "a profile under `profiles:` for other changes"
        )
    if not isinstance(config.get("profile"), str):
        raise ConfigError(f"profile must be a name, got {config.get('profile')!r}")
