"""The experiment grid, its output paths and what each stage reads: the one definition the
Snakefile, dvc.yaml, `vssl table`, the benchmarks and the tests share.

One (dataset, variant, seed) cell of a profile's grid is a :class:`Run`. A grid entry
(``grid.methods``) names a method or a *variant* (a method plus overrides, ``variants:`` in
params.yaml); the pipeline treats both alike, and ``Run.method`` is the registry method the
entry trains. Every file the pipeline writes has one path pattern, here (:data:`PATTERNS`):

    data/prepared/{profile}/{dataset}.json
    runs/{profile}/{dataset}/{variant}/seed{seed}/{checkpoint.pt, metrics.json, history.csv}
    features/{profile}/{dataset}/{variant}/seed{seed}/{train.npz, test.npz}
    results/probes/{profile}/{dataset}/{variant}/seed{seed}.json, seed{seed}.uncertainty.csv
    results/table.csv, results/figures/*.png
    resolved/{profile}/{stage}/{dataset}[-{variant}].json        (what each DVC stage reads)
    logs/{profile}/<stage>/...

The Snakemake rules take their patterns from :func:`pattern`; dvc.yaml spells the same with
``${...}`` and tests/test_workflow.py checks that all agree. Paths are relative to the
repository root (Snakemake's and DVC's working directory), as POSIX strings.

What a stage reads (:func:`stage_inputs`) is the resolved configuration that can change its
outputs, without keys that cannot (logging cadence, checkpoint cadence, worker counts).
Snakemake reruns a job when its digest changes; DVC depends on the same dict written as a file
by the `validate` stage (``vssl validate --dvc``), so both rerun exactly the same jobs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vssl.config import ConfigError, Params

TABLE = "results/table.csv"
FIGURES_DIR = "results/figures"
# One figure per question the table cannot answer at a glance.
FIGURES = {
    "accuracy": f"{FIGURES_DIR}/accuracy.png",  # probe accuracy by variant and dataset, +- std
    "training_curves": f"{FIGURES_DIR}/training_curves.png",  # history.csv of every run
    "uncertainty": f"{FIGURES_DIR}/uncertainty.png",  # VSSL's predicted variance vs error
}
# The probe writes a per-sample uncertainty file next to its JSON, for every run (the variance
# column is empty without VSSL's Gaussian head), so Snakemake and DVC declare it as an output.
UNCERTAINTY_SUFFIX = ".uncertainty.csv"

# Every output path, as a pattern over {profile} {dataset} {variant} {seed} {stage}.
PATTERNS: dict[str, str] = {
    "manifest": "data/prepared/{profile}/{dataset}.json",
    "run_dir": "runs/{profile}/{dataset}/{variant}/seed{seed}",
    "checkpoint": "runs/{profile}/{dataset}/{variant}/seed{seed}/checkpoint.pt",
    "metrics": "runs/{profile}/{dataset}/{variant}/seed{seed}/metrics.json",
    "history": "runs/{profile}/{dataset}/{variant}/seed{seed}/history.csv",
    "features_dir": "features/{profile}/{dataset}/{variant}/seed{seed}",
    "train_features": "features/{profile}/{dataset}/{variant}/seed{seed}/train.npz",
    "test_features": "features/{profile}/{dataset}/{variant}/seed{seed}/test.npz",
    "probe": "results/probes/{profile}/{dataset}/{variant}/seed{seed}.json",
    "uncertainty": "results/probes/{profile}/{dataset}/{variant}/seed{seed}" + UNCERTAINTY_SUFFIX,
    "run_log": "logs/{profile}/{stage}/{dataset}/{variant}/seed{seed}.log",
    "stage_log": "logs/{profile}/{stage}/{job}.log",
    "dataset_inputs": "resolved/{profile}/{stage}/{dataset}.json",
    "run_inputs": "resolved/{profile}/{stage}/{dataset}-{variant}.json",
}
RESOLVED_DIR = "resolved/{profile}"

# The stages, in DAG order, and the params sections each reads. `None` sections are resolved
# per grid entry (`methods.<its method>`, after its variant's overrides).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare_data": ("datasets.{dataset}", "data"),
    "pretrain": ("datasets.{dataset}", "data", "backbone", "pretrain", "methods.{method}"),
    "extract_features": ("datasets.{dataset}", "data", "extract"),
    "probe": ("probe",),
    "table": (),
}
STAGES = tuple(STAGE_SECTIONS)
# Keys that cannot change any output: editing them reruns nothing, and `--resume` accepts them
# (vssl.train.plan.resume_ignored_keys adds what only resuming may ignore). The `mlflow` section
# is read by no stage here, so none of its keys reruns anything either.
NON_RESULT_KEYS = {
    "data": ("num_workers",),
    "pretrain": ("checkpoint_every", "log_every", "checkpoint_on_signal"),
}


def pattern(kind: str, **fixed: Any) -> str:
    """The path pattern ``kind`` with the given fields filled in (the rest stay ``{field}``,
    Snakemake's wildcards)."""
    if kind not in PATTERNS:
        raise ValueError(f"unknown path pattern {kind!r}; known: {', '.join(PATTERNS)}")

    class _Keep(dict):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return PATTERNS[kind].format_map(_Keep({k: str(v) for k, v in fixed.items()}))


def prepared_manifest(profile: str, dataset: str) -> str:
    """The manifest `vssl prepare` writes for ``dataset``."""
    return pattern("manifest", profile=profile, dataset=dataset)


@dataclass(frozen=True, order=True)
class Run:
    """One cell of the grid: (dataset, variant, seed) under a profile, and its files.

    ``variant`` is the grid entry (a method name or a variant name), which names the run's
    folders; ``method`` is the registry method it trains (the variant's own name for a plain
    method)."""

    profile: str
    dataset: str
    variant: str
    seed: int
    method: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.method:
            object.__setattr__(self, "method", self.variant)

    def _path(self, kind: str, **extra: Any) -> str:
        return pattern(
            kind,
            profile=self.profile,
            dataset=self.dataset,
            variant=self.variant,
            seed=self.seed,
            **extra,
        )

    @property
    def key(self) -> str:
        """``dataset-variant-seed``: DVC's matrix stage suffix (``pretrain@<key>``)."""
        return f"{self.dataset}-{self.variant}-{self.seed}"

    @property
    def manifest(self) -> str:
        return self._path("manifest")

    @property
    def run_dir(self) -> str:
        return self._path("run_dir")

    @property
    def checkpoint(self) -> str:
        return self._path("checkpoint")

    @property
    def metrics(self) -> str:
        return self._path("metrics")

    @property
    def history(self) -> str:
        return self._path("history")

    @property
    def features_dir(self) -> str:
        return self._path("features_dir")

    @property
    def train_features(self) -> str:
        return self._path("train_features")

    @property
    def test_features(self) -> str:
        return self._path("test_features")

    @property
    def probe(self) -> str:
        return self._path("probe")

    @property
    def uncertainty(self) -> str:
        """The probe's per-sample uncertainty sidecar: written for every run (``mean_variance``
        empty without VSSL's Gaussian head), a declared output of the probe stage."""
        return self._path("uncertainty")

    def log(self, stage: str) -> str:
        """The log file of this run's ``stage`` (pretrain, extract_features or probe)."""
        return self._path("run_log", stage=stage)

    def inputs(self, stage: str) -> str:
        """The resolved inputs file of this run's ``stage`` that the DVC stage depends on."""
        return self._path("run_inputs", stage=stage)


def grid_runs(params: Params) -> list[Run]:
    """Every (dataset, variant, seed) of the resolved profile's grid, in grid order."""
    g = params.grid
    return [
        Run(params.profile, d, v, int(s), params.entry_method(v))
        for d, v, s in itertools.product(g.datasets, g.methods, g.seeds)
    ]


def table_outputs() -> list[str]:
    """What `vssl table` writes: the table and one PNG per figure."""
    return [TABLE, *FIGURES.values()]


def log_path(profile: str, stage: str, name: str) -> str:
    """The log file of a stage without a run (``prepare_data`` per dataset, ``table``)."""
    return pattern("stage_log", profile=profile, stage=stage, job=name)


def dataset_inputs_path(profile: str, stage: str, dataset: str) -> str:
    """The resolved inputs file of a per-dataset stage (``prepare_data``)."""
    return pattern("dataset_inputs", profile=profile, stage=stage, dataset=dataset)


def planned_outputs(params: Params) -> dict[str, set[str]]:
    """Stage name -> every output file the whole grid produces (logs excluded).

    This is the contract both Snakemake and dvc.yaml must meet; the tests compare each against it.
    """
    runs = grid_runs(params)
    return {
        "prepare_data": {prepared_manifest(params.profile, d) for d in params.grid.datasets},
        "pretrain": {p for r in runs for p in (r.checkpoint, r.metrics, r.history)},
        "extract_features": {p for r in runs for p in (r.train_features, r.test_features)},
        "probe": {p for r in runs for p in (r.probe, r.uncertainty)},
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
                f"resource gres={gres!r} allocates {n} GPU(s) but gpus={gpus}; set both in the "
                f'profile\'s set-resources (e.g. gpus: {n} and gres: "gpu:{n}")'
            )
    # One process per job and machine; the rest (mixed precision, ...) comes from params.yaml.
    # --quiet: when the trainer stops (e.g. exit 143 on SIGTERM), no launcher traceback follows
    # its one-line message in the log.
    common = "--num_machines 1 --dynamo_backend no --quiet"
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


def _without_non_results(section: str, value: Any) -> Any:
    skip = NON_RESULT_KEYS.get(section, ())
    if isinstance(value, dict) and skip:
        return {k: v for k, v in value.items() if k not in skip}
    return value


def stage_inputs(
    params: Params, stage: str, dataset: str | None = None, variant: str | None = None
) -> dict[str, Any]:
    """The resolved configuration ``stage`` reads for (``dataset``, ``variant``): a dict of
    dotted section -> value (its :data:`STAGE_SECTIONS`, variant overrides applied, keys in
    :data:`NON_RESULT_KEYS` dropped); for ``pretrain`` also the variant and its epoch count.
    Equal dicts mean the stage's outputs cannot differ."""
    if stage not in STAGE_SECTIONS:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    if variant is not None:
        params = params.for_entry(variant)  # ConfigError for an unknown name
    method = params.entry_method(variant) if variant is not None else None
    tree = params.to_dict()
    out: dict[str, Any] = {}
    for section in STAGE_SECTIONS[stage]:
        key = section.format(dataset=dataset, method=method)
        out[key] = _without_non_results(key, _lookup(tree, key))
    if stage == "pretrain" and dataset is not None and variant is not None:
        out["epochs"] = params.epochs_for(dataset)
        out["variant"] = variant
        out["method"] = method
    return out


def stage_digest(
    params: Params, stage: str, dataset: str | None = None, variant: str | None = None
) -> str:
    """``sha1(json(stage_inputs(...)))[:12]``: Snakemake stores it as a rule param, so editing
    params.yaml reruns exactly the jobs whose inputs changed (DVC: the same dict as a file)."""
    blob = json.dumps(stage_inputs(params, stage, dataset, variant), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def resolved_inputs(params: Params) -> dict[str, dict[str, Any]]:
    """Path -> contents of every resolved-inputs file DVC's stages depend on."""
    files: dict[str, dict[str, Any]] = {}
    for d in params.grid.datasets:
        path = dataset_inputs_path(params.profile, "prepare_data", d)
        files[path] = stage_inputs(params, "prepare_data", d)
    for r in grid_runs(params):
        for stage in ("pretrain", "extract_features", "probe"):
            files[r.inputs(stage)] = stage_inputs(params, stage, r.dataset, r.variant)
    return files


def write_resolved_inputs(params: Params, root: str | Path = ".") -> list[str]:
    """Write :func:`resolved_inputs` under ``root`` (each file atomically, only where its
    contents changed, so DVC sees unchanged files as unchanged); returns the paths."""
    from vssl.io import write_text

    written = []
    for rel, content in resolved_inputs(params).items():
        path = Path(root) / rel
        text = json.dumps(content, sort_keys=True, indent=2, default=str) + "\n"
        if not path.is_file() or path.read_text() != text:
            write_text(path, text)
        written.append(rel)
    return written


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
