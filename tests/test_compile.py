"""``pretrain.compile`` and ``pretrain.channels_last``: resolved per device, and a compiled
(channels-last) run trains on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vssl.cli import main
from vssl.train.assembly import use_channels_last, use_compile

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def test_auto_settings_per_device():
    assert use_compile("auto", "cuda") and not use_compile("auto", "cpu")
    assert use_compile(True, "cpu") and not use_compile(False, "cuda")
    assert use_channels_last("auto", "cuda", "resnet18")
    assert use_channels_last("auto", "cpu", "resnet50")  # measured faster on CPU too
    assert not use_channels_last(False, "cuda", "resnet18")
    assert not use_channels_last(True, "cuda", "vit_small")  # no layout to choose
    # A oneDNN crash: narrow ResNets on large images stay contiguous on the CPU (auto only).
    assert not use_channels_last("auto", "cpu", "resnet18", width=4, image_size=224)
    assert use_channels_last("auto", "cpu", "resnet18", width=4, image_size=32)
    assert use_channels_last("auto", "cpu", "resnet18", width=16, image_size=224)
    assert use_channels_last("auto", "cuda", "resnet18", width=4, image_size=224)
    assert use_channels_last(True, "cpu", "resnet18", width=4, image_size=224)


def _args(out: Path, sets=()) -> list[str]:
    a = ["pretrain", "--params", str(PARAMS), "--profile", "smoke", "--dataset", "cifar10_mini"]
    a += ["--method", "byol", "--seed", "0", "--out", str(out), "--epochs", "1"]
    for s in ["backbone.width=4", "data.train_subset=64", "data.test_subset=32",
              "pretrain.batch_size=32", *sets]:  # fmt: skip
        a += ["--set", s]
    return a


def test_contiguous_run_on_cpu(smoke_params, mlflow_uri, tmp_path):
    """channels_last=false (the other layout; auto is channels-last on CPU)."""
    out = tmp_path / "nchw"
    assert main(_args(out, ["pretrain.channels_last=false"])) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["loss"]) and m["compile"] == "eager"  # compile: auto, on a CPU


@pytest.mark.slow
def test_compiled_run_on_cpu(smoke_params, mlflow_uri, tmp_path, monkeypatch):
    """torch.compile on CPU (inductor, C++): the run trains, the module was compiled and its
    checkpoint keys are the eager ones."""
    from vssl.train import assembly

    compiled = []
    real = assembly.compile_train_module

    def spy(module, mode="default"):
        assert mode == "default"  # params.yaml's compile_mode (auto) on a CPU
        compiled.append(real(module, mode))
        return compiled[-1]

    monkeypatch.setattr(assembly, "compile_train_module", spy)
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    out = tmp_path / "compiled"
    assert main(_args(out, ["pretrain.compile=true", "pretrain.channels_last=true"])) == 0
    assert compiled == [True]
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo did compile graphs
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["loss"]) and m["global_step"] == 2 and m["compile"] == "default"
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert not any("_orig_mod" in k for k in ck["model"])


@pytest.mark.slow
def test_compiled_augmentation_matches_eager():
    """compile_ops: the same views as eager mode for the same drawn parameters and seed."""
    from vssl.augment import TensorTwoViewAugment, get_preset

    r = get_preset("cifar")
    eager = TensorTwoViewAugment(r, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
    compiled = TensorTwoViewAugment(r, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
    compiled.compile_ops()
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    for seed in (0, 1):
        torch.manual_seed(seed)
        a1, a2 = eager(x)
        torch.manual_seed(seed)
        b1, b2 = compiled(x)
        torch.testing.assert_close(b1, a1, atol=1e-4, rtol=0)
        torch.testing.assert_close(b2, a2, atol=1e-4, rtol=0)


def test_compile_mode_reaches_torch_compile(monkeypatch):
    """``pretrain.compile_mode``: "default" is torch.compile's default (mode None); the others
    pass through (reduce-overhead: CUDA graphs); anything else is a config error."""
    from vssl.config import ConfigError, load_params
    from vssl.train import assembly

    seen = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **k: seen.append(k))
    assert assembly.compile_train_module(torch.nn.Linear(2, 2)) is True
    assert assembly.compile_train_module(torch.nn.Linear(2, 2), "reduce-overhead") is True
    assert seen == [{"mode": None}, {"mode": "reduce-overhead"}]
    ok = load_params(PARAMS, overrides=["pretrain.compile_mode=reduce-overhead"])
    assert ok.pretrain.compile_mode == "reduce-overhead"
    with pytest.raises(ConfigError, match="compile_mode"):
        load_params(PARAMS, overrides=["pretrain.compile_mode=fastest"])


def test_compile_mode_auto_is_cuda_graphs_on_one_gpu_only():
    """``auto`` (params.yaml's): CUDA graphs on a single CUDA device, torch.compile's default
    with several processes (DDP) and on other devices; an explicit mode is kept everywhere."""
    from vssl.config import load_params
    from vssl.train.assembly import resolve_compile_mode

    assert load_params(PARAMS).pretrain.compile_mode == "auto"
    assert resolve_compile_mode("auto", "cuda", 1) == "reduce-overhead"
    assert resolve_compile_mode("auto", "cuda", 2) == "default"
    assert resolve_compile_mode("auto", "cpu", 1) == "default"
    assert resolve_compile_mode("auto", "mps", 1) == "default"
    assert resolve_compile_mode("default", "cuda", 1) == "default"
    assert resolve_compile_mode("max-autotune", "cpu", 1) == "max-autotune"
