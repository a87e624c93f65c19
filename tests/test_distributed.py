"""Two CPU processes (gloo DDP) launched by torchrun: `vssl pretrain` forms one process group.

``accelerate launch --cpu --num_processes 2`` starts a single process on a machine without MPI
(Accelerate's multi-CPU launcher is mpirun), so the test sets the torch.distributed environment
through torchrun; the engine then asks Accelerate for its CPU (gloo) backend.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes(data_root, tmp_path):
    from mlflow import MlflowClient

    out = tmp_path / "ddp"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VSSL_DATA_ROOT": str(data_root),
        "MLFLOW_TRACKING_URI": uri,
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd += ["-m", "vssl", "pretrain", "--params", str(PARAMS), "--profile", "smoke"]
    cmd += ["--dataset", "cifar10_mini", "--method", "vssl", "--seed", "0", "--out", str(out)]
    cmd += ["--epochs", "2"]
    for s in ("backbone.width=4", "data.train_subset=128", "data.test_subset=64",
              "pretrain.batch_size=32", "pretrain.grad_accum_steps=2"):  # fmt: skip
        cmd += ["--set", s]
    for extra in (["--stop-after", "1"], ["--resume"]):  # stop half-way, resume with 2 processes
        proc = subprocess.run(
            cmd + extra, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["global_step"] == 2 * (128 // 32)
    assert m["knn_top1"] is not None and m["online_probe_top1"] is not None
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["complete"]
    # only the main process logs: one MLflow run, reopened on resume
    c = MlflowClient(uri)
    runs = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.run_id == m["mlflow_run_id"]
    assert [x.step for x in c.get_metric_history(m["mlflow_run_id"], "loss")] == [1, 2]
