"""The workflow: grid expansion, launcher flags, and Snakemake and DVC planning the same DAG.

The quick tests dry-run Snakemake and read dvc.yaml through DVC's own API, then compare both with
vssl.workflow.planned_outputs and with each other (stages, commands, dependencies, outputs), so
the two entry points cannot drift apart. The end-to-end test (slow) runs the smoke profile
through both in a copy of the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_resume import NON_RESULT_CHANGES  # settings that cannot change results

from vssl import workflow as wf
from vssl.config import ConfigError, load_params, load_raw

ROOT = Path(__file__).resolve().parents[1]
DATA_PREFIXES = ("data/", "runs/", "features/", "results/")


# --------------------------------------------------------------------------- grid and helpers


def test_grid_runs_and_paths_follow_the_documented_layout() -> None:
    p = load_params(ROOT / "params.yaml", profile="paper")
    runs = wf.grid_runs(p)
    assert len(runs) == 3 * 5 * 3
    assert runs[0] == wf.Run("paper", "cifar10", "vssl", 0)
    assert runs[1].seed == 1 and runs[3].method == "byol"  # seeds vary fastest, then methods
    r = wf.Run("smoke", "fashion_mnist", "byol", 2)
    assert r.manifest == "data/prepared/smoke/fashion_mnist.json"
    assert r.checkpoint == "runs/smoke/fashion_mnist/byol/seed2/checkpoint.pt"
    assert r.metrics == "runs/smoke/fashion_mnist/byol/seed2/metrics.json"
    assert r.history == "runs/smoke/fashion_mnist/byol/seed2/history.csv"
    assert r.train_features == "features/smoke/fashion_mnist/byol/seed2/train.npz"
    assert r.test_features == "features/smoke/fashion_mnist/byol/seed2/test.npz"
    assert r.probe == "results/probes/smoke/fashion_mnist/byol/seed2.json"
    assert r.uncertainty == "results/probes/smoke/fashion_mnist/byol/seed2.uncertainty.csv"
    assert r.key == "fashion_mnist-byol-2"
    # The sidecar name is the probe's own (vssl.eval.uncertainty.sidecar_path), not a copy.
    from vssl.eval.uncertainty import sidecar_path

    assert str(sidecar_path(r.probe)) == r.uncertainty


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_probe_sidecar_is_a_planned_output_of_every_run(profile: str) -> None:
    """`vssl probe` writes the sidecar for every run, so DVC caches, pushes and pulls it and
    `vssl table` finds it in a fresh clone."""
    params = load_params(ROOT / "params.yaml", profile=profile)
    runs = wf.grid_runs(params)
    assert any(r.method != "vssl" for r in runs)
    assert wf.planned_outputs(params)["probe"] == {
        p for r in runs for p in (r.probe, r.uncertainty)
    }


@pytest.mark.parametrize(
    ("gpus", "gres", "expected"),
    [
        (0, None, "--cpu --num_processes 1"),
        (1, None, "--num_processes 1"),
        (1, "gpu:1", "--num_processes 1"),
        (1, "gpu", "--num_processes 1"),
        (4, "gpu:a100:4", "--multi_gpu --num_processes 4"),
        (2, None, "--multi_gpu --num_processes 2"),
    ],
)
def test_launch_args(gpus: int, gres: str | None, expected: str) -> None:
    args = wf.launch_args(gpus, gres)
    assert args.startswith(expected + " ")
    assert ("--cpu" in args) == (gpus == 0) and ("--multi_gpu" in args) == (gpus > 1)


@pytest.mark.parametrize("gpus", [-1, True, 1.5, "2"])
def test_launch_args_rejects_bad_gpus(gpus: object) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        wf.launch_args(gpus)  # type: ignore[arg-type]


def test_launch_args_rejects_gres_that_disagrees() -> None:
    with pytest.raises(ValueError, match=r"allocates 2 GPU\(s\) but gpus=1"):
        wf.launch_args(1, "gpu:tesla:2")


def test_stage_digest_changes_only_with_what_the_stage_reads() -> None:
    base = load_params(ROOT / "params.yaml", profile="smoke")
    more = load_params(ROOT / "params.yaml", profile="smoke", overrides=["pretrain.epochs=7"])
    tau = load_params(
        ROOT / "params.yaml", profile="smoke", overrides=["methods.byol.tau_base=0.9"]
    )
    d = wf.stage_digest
    assert d(base, "pretrain", "fashion_mnist", "vssl") == d(
        base, "pretrain", "fashion_mnist", "vssl"
    )
    assert d(base, "pretrain", "fashion_mnist", "vssl") != d(
        more, "pretrain", "fashion_mnist", "vssl"
    )
    assert d(base, "probe", "fashion_mnist", "vssl") == d(more, "probe", "fashion_mnist", "vssl")
    # A method's hyperparameters rerun that method only.
    assert d(base, "pretrain", "fashion_mnist", "byol") != d(
        tau, "pretrain", "fashion_mnist", "byol"
    )
    assert d(base, "pretrain", "fashion_mnist", "vssl") == d(
        tau, "pretrain", "fashion_mnist", "vssl"
    )
    with pytest.raises(ValueError, match="known: prepare_data, pretrain"):
        d(base, "train")


def test_stage_digest_of_a_variant_follows_its_method_and_its_overrides() -> None:
    base = load_params(ROOT / "params.yaml", profile="smoke")
    d = wf.stage_digest
    # A variant differs from its method by its overrides, and follows its method's params.
    assert d(base, "pretrain", "cifar10_mini", "vssl_nokl") != d(
        base, "pretrain", "cifar10_mini", "vssl"
    )
    beta = load_params(ROOT / "params.yaml", profile="smoke", overrides=["methods.vssl.beta=0.5"])
    assert d(beta, "pretrain", "cifar10_mini", "vssl_nokl") != d(
        base, "pretrain", "cifar10_mini", "vssl_nokl"
    )
    assert d(beta, "pretrain", "cifar10_mini", "byol") == d(
        base, "pretrain", "cifar10_mini", "byol"
    )
    # Keys that cannot change results rerun nothing.
    quiet = load_params(
        ROOT / "params.yaml",
        profile="smoke",
        overrides=["pretrain.log_every=7", "pretrain.checkpoint_every=3", "data.num_workers=1"],
    )
    for stage in ("prepare_data", "pretrain", "extract_features", "probe"):
        assert d(quiet, stage, "cifar10_mini", "vssl") == d(base, stage, "cifar10_mini", "vssl")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        d(base, "pretrain", "cifar10_mini", "nope")


@pytest.mark.parametrize("change", NON_RESULT_CHANGES)
def test_settings_that_cannot_change_results_rerun_nothing(change: str) -> None:
    """Neither Snakemake (stage_digest) nor DVC (the resolved-inputs files) reruns a stage for
    these; `vssl pretrain --resume` accepts them too (tests/test_resume.py)."""
    base = load_params(ROOT / "params.yaml", profile="smoke")
    other = load_params(ROOT / "params.yaml", profile="smoke", overrides=[change])
    for stage in ("prepare_data", "pretrain", "extract_features", "probe"):
        for variant in ("vssl", "byol", "vssl_nokl"):
            args = (stage, "cifar10_mini", variant)
            assert wf.stage_digest(other, *args) == wf.stage_digest(base, *args), (stage, variant)
    assert wf.resolved_inputs(other) == wf.resolved_inputs(base)


def test_resume_ignores_the_workflows_non_result_keys() -> None:
    """One definition: what --resume may ignore is NON_RESULT_KEYS plus the epoch counts and
    the monitors' cadences (which change history.csv, so the workflow reruns for them)."""
    from vssl.train.plan import resume_ignored_keys

    ignored = resume_ignored_keys()
    for section, keys in wf.NON_RESULT_KEYS.items():
        assert set(keys) <= ignored[section], section
    assert ignored["pretrain"] - set(wf.NON_RESULT_KEYS["pretrain"]) == {
        "epochs",
        "epochs_by_dataset",
        "knn_every",
        "eval_every",
    }
    assert "checkpoint_on_signal" in wf.NON_RESULT_KEYS["pretrain"]


def test_snakemake_config_may_only_change_the_profile() -> None:
    raw = load_raw(ROOT / "params.yaml")
    wf.check_snakemake_config({**raw, "profile": "smoke"}, raw)
    with pytest.raises(ConfigError, match="may only set `profile` \\(got pretrain\\)"):
        wf.check_snakemake_config({**raw, "pretrain": 3}, raw)
    with pytest.raises(ConfigError, match="got gpus"):
        wf.check_snakemake_config({**raw, "gpus": 1}, raw)


# --------------------------------------------------------------------------- Snakemake plan


@dataclass
class Job:
    rule: str
    input: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    resources: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    shell: str | None = None


def snakemake(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    # --nolock: several test processes may dry-run the same tree at once.
    cmd = ["snakemake", "--nolock", *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def parse_dry_run(text: str) -> list[Job]:
    """Jobs of `snakemake -n -p` output: rule, input, output, log, resources, shell command."""
    jobs: list[Job] = []
    for line in text.splitlines():
        if m := re.fullmatch(r"(?:local)?rule (\w+):", line):
            jobs.append(Job(m.group(1)))
        elif jobs and (m := re.fullmatch(r"\s+(input|output|log): (.*)", line)):
            setattr(jobs[-1], m.group(1), m.group(2).split(", "))
        elif jobs and (m := re.fullmatch(r"\s+resources: (.*)", line)):
            jobs[-1].resources = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif jobs and (m := re.fullmatch(r"\s+priority: (-?\d+)", line)):
            jobs[-1].priority = int(m.group(1))
        elif jobs and line.startswith("Shell command: "):
            shell = line[len("Shell command: ") :]
            jobs[-1].shell = None if shell == "None" else shell
    return jobs


def snakemake_plan(profile: str, *extra: str) -> list[Job]:
    out = snakemake("-n", "-p", "--config", f"profile={profile}", *extra)
    jobs = parse_dry_run(out.stdout + out.stderr)
    assert jobs, out.stdout + out.stderr
    return jobs


@pytest.fixture(scope="module")
def smoke_plan() -> list[Job]:
    return snakemake_plan("smoke")


def test_snakemake_plans_every_documented_output(smoke_plan: list[Job]) -> None:
    params = load_params(ROOT / "params.yaml", profile="smoke")
    planned: dict[str, set[str]] = defaultdict(set)
    for job in smoke_plan:
        planned[job.rule].update(job.output)
    assert {k: v for k, v in planned.items() if k != "all"} == wf.planned_outputs(params)
    counts = {rule: sum(j.rule == rule for j in smoke_plan) for rule in wf.STAGES}
    n = len(wf.grid_runs(params))
    assert counts == {
        "prepare_data": 1,
        "pretrain": n,
        "extract_features": n,
        "probe": n,
        "table": 1,
    }
    for job in smoke_plan:
        if job.rule != "all":
            # One log file per job, under logs/, and the command writes into it.
            assert len(job.log) == 1 and job.log[0].startswith(f"logs/{params.profile}/")
            assert job.shell and job.shell.endswith(f"> {job.log[0]} 2>&1")


def test_snakemake_pretrain_launches_through_accelerate(smoke_plan: list[Job]) -> None:
    for job in (j for j in smoke_plan if j.rule == "pretrain"):
        assert job.resources["gpus"] == "0"
        assert job.shell and job.shell.startswith(
            "trap '' TERM; accelerate launch --cpu --num_processes 1 "
        )
        assert " -m vssl pretrain " in job.shell
        # An interrupted job continues from its partial checkpoint when rerun.
        assert " --resume --restart-incompatible " in job.shell


def test_a_finished_run_is_evaluated_before_the_next_pretraining(smoke_plan: list[Job]) -> None:
    # Snakemake runs the ready job of highest priority first: a pretrained run's extraction and
    # probe outrank every pending pretraining, so results arrive run by run on a busy machine.
    priority = defaultdict(set)
    for job in smoke_plan:
        priority[job.rule].add(job.priority)
    assert priority["pretrain"] == {0}
    assert min(priority["extract_features"]) > max(priority["pretrain"])
    assert min(priority["probe"]) > max(priority["pretrain"])


def test_snakemake_gpu_resource_sets_processes() -> None:
    jobs = snakemake_plan("smoke", "--set-resources", "pretrain:gpus=4")
    shells = [j.shell for j in jobs if j.rule == "pretrain"]
    assert shells and all(
        s and s.startswith("trap '' TERM; accelerate launch --multi_gpu --num_processes 4 ")
        for s in shells
    )


def test_snakemake_paper_profile_plans_the_paper_grid() -> None:
    jobs = snakemake_plan("paper")
    pre = [j for j in jobs if j.rule == "pretrain"]
    assert len(pre) == 3 * 5 * 3
    assert any("runs/paper/imagenet100/barlow_twins/seed2/checkpoint.pt" in j.output for j in pre)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("profile=nope", "unknown profile 'nope'; known: smoke, quick"),
        ("pretrain=3", "may only set `profile`"),
    ],
)
def test_snakemake_rejects_bad_config_before_running(config: str, message: str) -> None:
    out = snakemake("-n", "--config", config, check=False)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t + "\nprofile: smoke\n",
            "params.yaml: the key 'profile' is given twice (lines",
        ),
        (lambda t: t.replace("\ngrid:\n", "\ngrid: [\n", 1), "params.yaml: not valid YAML"),
    ],
)
def test_snakemake_names_the_line_of_a_malformed_params_file(
    tmp_path: Path, edit: Callable[[str], str], message: str
) -> None:
    """A malformed params.yaml gets the project's one message (as from `vssl validate`), exit
    2: Snakemake's `configfile:` alone would report a YAML error as its own WorkflowError
    ("Config file is not valid JSON or YAML", naming no file), and keeps the last of two equal
    keys (the Snakefile's later check catches those)."""
    shutil.copy(ROOT / "Snakefile", tmp_path)
    shutil.copytree(ROOT / "workflow", tmp_path / "workflow")
    (tmp_path / "params.yaml").write_text(edit((ROOT / "params.yaml").read_text()))
    out = snakemake("-n", cwd=tmp_path, check=False)
    assert out.returncode == 2 and "line" in out.stderr, out.stderr
    assert f"snakemake: invalid configuration: {message}" in out.stderr


def test_slurm_profile_dry_run_without_slurm_tools() -> None:
    out = snakemake("-n", "-p", "--profile", "workflow/profiles/slurm", "--config", "profile=smoke")
    jobs = parse_dry_run(out.stdout + out.stderr)
    pre = [j for j in jobs if j.rule == "pretrain"]
    assert pre
    for job in pre:
        # The GPU the job is given in SLURM (gres) and the processes accelerate starts agree.
        assert job.resources["gpus"] == "1" and job.resources["gres"] == "gpu:1"
        assert job.resources["slurm_partition"] == "gpu"
        assert job.shell and job.shell.startswith(
            "trap '' TERM; accelerate launch --num_processes 1 "
        )


def test_default_profile_dry_run() -> None:
    out = snakemake("-n", "--profile", "workflow/profiles/default", "--config", "profile=smoke")
    assert "table" in out.stdout + out.stderr


# --------------------------------------------------------------------------- DVC plan


@dataclass
class Stage:
    name: str  # without the matrix suffix
    key: str | None  # the matrix suffix (dataset-method-seed) or None
    cmd: str
    deps: list[str]
    params: list[str]
    outs: list[str]
    metrics: list[str]
    plots: list[str]


def dvc_stages(repo_dir: Path) -> list[Stage]:
    """dvc.yaml after interpolation, through DVC's own API."""
    from dvc.repo import Repo

    stages = []
    with Repo(str(repo_dir)) as repo:
        for s in repo.index.stages:
            name, _, key = s.name.partition("@")
            params = [p for d in s.deps if hasattr(d, "params") for p in d.params]
            stages.append(
                Stage(
                    name=name,
                    key=key or None,
                    cmd=s.cmd,
                    deps=[d.def_path for d in s.deps if not hasattr(d, "params")],
                    params=params,
                    outs=[o.def_path for o in s.outs],
                    metrics=[o.def_path for o in s.outs if o.metric],
                    plots=[o.def_path for o in s.outs if o.plot],
                )
            )
    return stages


def dvc_tree(tmp_path: Path, profile: str) -> Path:
    """dvc.yaml and params.yaml (profile set as `dvc exp run -S profile=X` does) in a DVC repo."""
    from dvc.repo import Repo

    repo = tmp_path / f"dvc-{profile}"
    repo.mkdir()
    Repo.init(str(repo), no_scm=True).close()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    text = (ROOT / "params.yaml").read_text()
    text, n = re.subn(r"(?m)^profile: *\w+", f"profile: {profile}", text)
    assert n == 1
    (repo / "params.yaml").write_text(text)
    return repo


def _normalise(cmd: str) -> str:
    """A command without Snakemake's log redirection and accelerate's resource-specific flags."""
    cmd = re.sub(r" > \S+ 2>&1$", "", cmd.strip())
    launch = r"^((?:trap '' TERM; )?)accelerate launch (?:--\S+(?: (?!-)\S+)? )*-m "
    return re.sub(launch, r"\1accelerate launch -m ", cmd)


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_dvc_and_snakemake_plan_the_same_dag(tmp_path: Path, profile: str) -> None:
    params = load_params(ROOT / "params.yaml", profile=profile)
    stages = dvc_stages(dvc_tree(tmp_path, profile))
    jobs = [j for j in snakemake_plan(profile) if j.rule != "all"]

    # The same stages, in the same number, with the same outputs (and the documented ones).
    assert stages[0].name == "validate"
    assert stages[0].cmd == "python -m vssl validate --params params.yaml --dvc -q"
    assert stages[0].outs == [f"resolved/{profile}"] and "params.yaml" in stages[0].deps
    dvc_work = stages[1:]
    assert sorted(s.name for s in dvc_work) == sorted(j.rule for j in jobs)
    dvc_outs = defaultdict(set)
    for s in dvc_work:
        dvc_outs[s.name].update(s.outs)
    assert dict(dvc_outs) == wf.planned_outputs(params)

    resolved = wf.resolved_inputs(params)
    by_outs = {frozenset(j.output): j for j in jobs}
    for s in dvc_work:
        job = by_outs[frozenset(s.outs)]  # KeyError: a DVC stage Snakemake does not plan
        # The same command, up to the log file and the launcher's resource flags.
        assert _normalise(s.cmd) == _normalise(job.shell or ""), s.name
        # The same data dependencies (dvc.yaml's table lists the folders holding its inputs).
        data_deps = sorted(d for d in s.deps if d.startswith(DATA_PREFIXES))
        if s.name == "table":
            assert data_deps == [f"results/probes/{profile}", f"runs/{profile}"]
            assert all(any(i.startswith(d + "/") for d in data_deps) for i in job.input)
        else:
            assert data_deps == sorted(job.input), s.name
        # Code dependencies exist, so DVC can hash them.
        for d in s.deps:
            if not d.startswith((*DATA_PREFIXES, "resolved/")):
                assert (ROOT / d).exists(), d
        # What a stage reads: its own resolved-inputs file (written by `validate`), whose
        # contents hash to the digest Snakemake keys the same job on; no params.yaml keys.
        if s.name == "table":
            assert sorted(s.params) == ["grid", "profile", "variants"]
        else:
            inputs = [d for d in s.deps if d.startswith("resolved/")]
            assert len(inputs) == 1 and inputs[0] in resolved, (s.name, inputs)
            assert s.params == [], s.name
            if s.name == "prepare_data":
                ds, variant = s.key, None
            else:
                ds, variant = s.key.rsplit("-", 1)[0].split("-", 1)
            assert resolved[inputs[0]] == wf.stage_inputs(params, s.name, ds, variant)

    runs = wf.grid_runs(params)
    metrics = {p for s in dvc_work for p in s.metrics}
    assert metrics == {r.probe for r in runs} | {r.metrics for r in runs}
    assert {p for s in dvc_work for p in s.plots} == {r.history for r in runs}


def test_dvc_remote_and_ignore_are_shipped() -> None:
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"(?m)^\s*remote = local$", config)
    assert re.search(r"(?m)^\s*url = \.\./\.\./vssl-dvc-remote$", config)
    assert "__pycache__/" in (ROOT / ".dvcignore").read_text()


# --------------------------------------------------------------------------- end to end


def _copy_repo(dst: Path, src: Path = ROOT) -> None:
    """The files a fresh clone of ``src`` has: tracked and untracked-but-not-ignored ones (what
    committing everything git does not ignore would hold)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for f in filter(None, files):
        path = src / f.decode()
        if path.is_file():
            (dst / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / f.decode())


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        logs = (
            "\n".join(
                f"--- {p.relative_to(cwd)}\n{p.read_text()[-3000:]}"
                for p in sorted((cwd / "logs").rglob("*.log"))
            )
            if (cwd / "logs").is_dir()
            else ""
        )
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{out.stdout[-5000:]}\n{out.stderr[-5000:]}\n{logs}"
        )
    return out.stdout + out.stderr


def _mlflow_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exps = client.search_experiments()
    return client.search_runs([e.experiment_id for e in exps], max_results=1000)


def _check_outputs(repo: Path, params) -> None:
    import pandas as pd

    table = pd.read_csv(repo / wf.TABLE)
    g = params.grid
    assert len(table) == len(g.datasets) * len(g.methods)
    assert set(table["variant"]) == set(g.methods) and (table["profile"] == params.profile).all()
    assert (table["n_seeds"] == len(g.seeds)).all()
    for col in ("linear_top1_mean", "knn20_top1_mean", "knn200_top1_mean"):
        assert table[col].between(0, 100).all(), col
    vssl = table[table["method"] == "vssl"]
    assert len(vssl) >= 1
    assert vssl["uncertainty_error_auroc_mean"].between(0, 1).all()
    for fig in wf.FIGURES.values():
        assert (repo / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _check_mlflow(uri: str, params) -> None:
    runs = _mlflow_runs(uri)
    assert all(r.info.status == "FINISHED" for r in runs)
    by_stage = defaultdict(list)
    for r in runs:
        by_stage[r.data.tags.get("stage")].append(r)
    n = len(wf.grid_runs(params))
    parents = by_stage["pretrain"]
    assert len(parents) == n, {k: len(v) for k, v in by_stage.items()}
    assert len(by_stage["table"]) == 1
    assert by_stage["table"][0].data.tags["profile"] == params.profile
    # one prepare run per dataset, naming the data files it verified
    assert sorted(r.data.tags["dataset"] for r in by_stage["prepare"]) == sorted(
        params.grid.datasets
    )
    assert all(any(k.startswith("sha256.") for k in r.data.tags) for r in by_stage["prepare"])
    parent_ids = {r.info.run_id for r in parents}
    for stage in ("extract", "probe"):
        children = by_stage[stage]
        assert len(children) == n, stage
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == parent_ids
    for r in parents + by_stage["extract"] + by_stage["probe"]:
        assert r.data.tags["profile"] == params.profile
    # One parent per (dataset, method, seed) of the grid, each child under the parent of its own.
    key = {
        r.info.run_id: (r.data.tags["dataset"], r.data.tags["variant"], r.data.tags["seed"])
        for r in parents
    }
    assert sorted(key.values()) == sorted(
        (r.dataset, r.variant, str(r.seed)) for r in wf.grid_runs(params)
    )
    for r in parents:  # the registry method behind each grid entry
        assert r.data.tags["method"] == params.entry_method(r.data.tags["variant"])
    assert not any("mlflow.parentRunId" in r.data.tags for r in parents)
    for c in by_stage["extract"] + by_stage["probe"]:
        tags = c.data.tags
        assert key[tags["mlflow.parentRunId"]] == (tags["dataset"], tags["variant"], tags["seed"])


@pytest.mark.slow
def test_end_to_end_smoke_snakemake_and_dvc(tmp_path: Path, data_root: Path) -> None:
    """The smoke profile through `snakemake --cores 2` and through `dvc repro`, in a fresh copy."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    env = {
        **os.environ,
        "VSSL_DATA_ROOT": str(data_root),
        "PYTHONPATH": str(repo),  # the copy's package, not an installed one
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
    }
    params = load_params(repo / "params.yaml", profile="smoke")

    # Snakemake, two jobs at a time, all logging into one MLflow store.
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'snakemake-mlflow.db'}"
    _run(["snakemake", wf.TABLE, "--cores", "2", "--config", "profile=smoke"], repo, env)
    _check_outputs(repo, params)
    _check_mlflow(env["MLFLOW_TRACKING_URI"], params)
    for stage in wf.STAGES:
        assert list((repo / "logs" / "smoke" / stage).rglob("*.log")), stage
    snakemake_table = (repo / wf.TABLE).read_bytes()
    shutil.rmtree(repo / "results")  # DVC must recreate everything itself
    for d in ("data", "runs", "features", "logs"):
        shutil.rmtree(repo / d)

    # DVC, with the profile selected in params.yaml as `dvc exp run -S profile=smoke` would.
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(re.sub(r"(?m)^profile: *\w+", "profile: smoke", text))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'dvc-mlflow.db'}"
    log = _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    assert log.index("'validate'") < log.index("'prepare_data@")  # validation runs first
    _check_outputs(repo, params)
    assert (repo / wf.TABLE).read_bytes() == snakemake_table  # the same table either way
    _check_mlflow(env["MLFLOW_TRACKING_URI"], params)

    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    runs = wf.grid_runs(params)
    assert set(lock) == {"validate", "table"} | {
        f"{s}@{k}" for s in ("pretrain", "extract_features", "probe") for k in (r.key for r in runs)
    } | {f"prepare_data@{d}" for d in params.grid.datasets}
    outs = {o["path"] for st in lock.values() for o in st.get("outs", [])}
    # Every planned output, and the validate stage's resolved inputs (uncached, not planned).
    assert outs == set().union(*wf.planned_outputs(params).values()) | {
        f"resolved/{params.profile}"
    }
    assert all(o.get("md5") for st in lock.values() for o in st.get("outs", []))
    status = _run([sys.executable, "-m", "dvc", "status"], repo, env)
    assert "up to date" in status.lower()
    plots = _run([sys.executable, "-m", "dvc", "plots", "show", "--json"], repo, env)
    assert "history.csv" in plots
    _run([sys.executable, "-m", "dvc", "push"], repo, env)
    assert any((tmp_path / "vssl-dvc-remote").rglob("*"))  # ../vssl-dvc-remote beside the repo
    # A fresh clone has no cache: `dvc pull` brings the outputs back from the remote.
    shutil.rmtree(repo / ".dvc" / "cache")
    table = (repo / wf.TABLE).read_bytes()
    (repo / wf.TABLE).unlink()
    (repo / runs[0].checkpoint).unlink()
    _run([sys.executable, "-m", "dvc", "pull"], repo, env)
    assert (repo / wf.TABLE).read_bytes() == table and (repo / runs[0].checkpoint).is_file()

    # The round trip: a fresh clone (what git holds, .dvc/config and dvc.lock included; no
    # cache, no outputs) beside the repository, so ../vssl-dvc-remote is the same remote.
    clone = tmp_path / "clone"
    clone.mkdir()
    _copy_repo(clone, src=repo)
    assert (clone / ".dvc" / "config").is_file() and (clone / "dvc.lock").is_file()
    assert not (clone / ".dvc" / "cache").exists()
    assert not any((clone / d).exists() for d in ("data", "runs", "features", "results"))
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    env["PYTHONPATH"] = str(clone)
    _run([sys.executable, "-m", "dvc", "pull"], clone, env)
    planned = set().union(*wf.planned_outputs(params).values())
    assert all((clone / p).is_file() for p in planned), sorted(
        p for p in planned if not (clone / p).is_file()
    )
    for r in runs:  # every probe's sidecar came back (a VSSL run's has variances)
        assert (clone / r.uncertainty).read_bytes() == (repo / r.uncertainty).read_bytes()
    # `resolved/` (what each stage reads) is the validate stage's uncached output and is not in
    # git: a clone regenerates it, identical to the lock's hash, with the validate stage itself.
    status = _run([sys.executable, "-m", "dvc", "status"], clone, env)
    changed = re.findall(r"(?m)^\s+(?:deleted|modified|new|not in cache):\s+(\S+)$", status)
    assert all(p.startswith(f"resolved/{params.profile}") for p in changed), status
    repro = _run([sys.executable, "-m", "dvc", "repro"], clone, env)
    ran = re.findall(r"Running stage '([^']+)'", repro)
    assert set(ran) <= {"validate"}, repro
    assert "Stage 'table' didn't change, skipping" in repro
    status = _run([sys.executable, "-m", "dvc", "status"], clone, env)
    assert "up to date" in status.lower(), status
    repro = _run([sys.executable, "-m", "dvc", "repro"], clone, env)
    assert "Running stage" not in repro, repro
    assert (clone / wf.TABLE).read_bytes() == table


# --------------------------------------------------------------------------- preemption

# One 4-epoch run without periodic checkpoints: what an interrupted job leaves is only the state
# the engine saves on the signal (appended under `profiles:`, params.yaml's last section).
RESUME_PROFILE = """
  resumetest:               # tests/test_workflow.py: one short run, no periodic checkpoint
    grid: {datasets: [cifar10_mini], methods: [vssl], seeds: [0]}
    data: {train_subset: 512, test_subset: 256, num_workers: 0}
    backbone: {width: 4}
    pretrain: {epochs: 4, batch_size: 128, warmup_epochs: 1, checkpoint_every: 100, knn_every: 2}
    methods:
      vssl: {proj_hidden_dim: 64, latent_dim: 32, pred_hidden_dim: 64}
"""


def _interrupt(cmd: list[str], cwd: Path, env: dict[str, str], seen, timeout: float = 600):
    """Start ``cmd`` in its own process group, send the group SIGTERM once ``seen(output)`` is
    true (``output``: what the command printed so far), and return (returncode, output)."""
    import signal
    import threading
    import time

    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not seen("".join(lines)):
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    assert proc.poll() is None, "finished before it could be interrupted:\n" + "".join(lines)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=300)
    reader.join(timeout=300)  # EOF once every writer (the orphaned trainer too) has exited
    return proc.returncode, "".join(lines)


def _wait_for(path: Path, text: str, timeout: float = 120) -> str:
    import time

    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.is_file() else ""
        if text in content:
            return content
        assert time.monotonic() < deadline, content[-3000:]
        time.sleep(0.2)


def _same_weights(a: Path, b: Path) -> int:
    import torch

    sa = torch.load(a, weights_only=True)["model"]
    sb = torch.load(b, weights_only=True)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    return len(sa)


@pytest.mark.slow
def test_interrupted_pretrain_resumes_in_snakemake_and_dvc(tmp_path: Path, data_root: Path) -> None:
    """SIGTERM to the process group (what SLURM and Ctrl-C do) after epoch 2 of 4, then a rerun:
    `snakemake --rerun-incomplete` and `dvc repro` continue from the partial checkpoint and end
    with exactly the weights of an uninterrupted run (CPU)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    text = (repo / "params.yaml").read_text()
    assert re.search(r"(?m)^profiles:$", text) and not re.search(
        r"(?m)^\S", text.split("\nprofiles:\n")[1]
    )
    (repo / "params.yaml").write_text(text.rstrip("\n") + "\n" + RESUME_PROFILE)
    env = {
        **os.environ,
        "VSSL_DATA_ROOT": str(data_root),
        "PYTHONPATH": str(repo),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    run = wf.Run("resumetest", "cifar10_mini", "vssl", 0)
    partial = repo / run.run_dir / "checkpoint.partial.pt"
    log = repo / run.log("pretrain")
    smk = ["snakemake", run.checkpoint, "--cores", "1", "--config", "profile=resumetest"]
    epoch2 = re.compile(r"vssl\.train: epoch 2/4 (?!step)")

    # Snakemake: interrupt, rerun with --rerun-incomplete.
    code, out = _interrupt(
        smk, repo, env, lambda _: log.is_file() and bool(epoch2.search(log.read_text()))
    )
    assert code != 0, out
    text = _wait_for(log, "vssl pretrain: interrupted by SIGTERM")
    assert "Traceback" not in text, text  # nor the launcher's (accelerate launch --quiet)
    import torch

    ck = torch.load(partial, weights_only=True)
    assert ck["epoch"] in (2, 3) and not ck["complete"], ck["epoch"]
    assert not (repo / run.checkpoint).exists()  # no declared output of an unfinished job
    _run([*smk, "--rerun-incomplete"], repo, env)
    assert f"resuming {partial.relative_to(repo)} from epoch {ck['epoch']}" in log.read_text()
    assert not partial.exists()
    resumed = tmp_path / "snakemake-resumed.pt"
    shutil.copy(repo / run.checkpoint, resumed)
    # The uninterrupted reference: the same job, forced to run again from scratch.
    _run([*smk, "--forcerun", "pretrain"], repo, env)
    assert "resuming" not in log.read_text()
    n = _same_weights(resumed, repo / run.checkpoint)
    stopped = next(ln for ln in text.splitlines() if "interrupted by SIGTERM" in ln)
    print(f"snakemake: {stopped}\nsnakemake: resumed from epoch {ck['epoch']}; {n} tensors equal")

    # DVC: `dvc repro` of the one pretrain stage, interrupted, then repro again.
    reference = tmp_path / "reference.pt"
    shutil.copy(repo / run.checkpoint, reference)
    for d in ("data", "runs", "logs"):
        shutil.rmtree(repo / d)
    text = (repo / "params.yaml").read_text()
    text, n1 = re.subn(r"(?m)^profile: *\w+", "profile: resumetest", text)
    text, n2 = re.subn(
        r"(?m)^grid:\n(  .*\n)+",
        "grid:\n  datasets: [cifar10_mini]\n  methods: [vssl]\n  seeds: [0]\n",
        text,
    )
    assert n1 == n2 == 1
    (repo / "params.yaml").write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    repro = [sys.executable, "-m", "dvc", "repro", f"pretrain@{run.key}"]
    code, out = _interrupt(repro, repo, env, lambda o: bool(epoch2.search(o)))
    assert code != 0 and "vssl pretrain: interrupted by SIGTERM" in out, out[-3000:]
    stopped = next(ln for ln in out.splitlines() if "interrupted by SIGTERM" in ln)
    ck = torch.load(partial, weights_only=True)
    assert ck["epoch"] in (2, 3) and not ck["complete"], ck["epoch"]
    out = _run(repro, repo, env)
    assert f"resuming {partial.relative_to(repo)} from epoch {ck['epoch']}" in out, out[-3000:]
    n = _same_weights(reference, repo / run.checkpoint)
    print(f"dvc: {stopped}\ndvc: resumed from epoch {ck['epoch']}; {n} tensors equal")
