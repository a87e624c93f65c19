"""vssl.train.snapshot.StateSnapshot: the host copy of a run's state kept for a stop signal."""

from __future__ import annotations

import pytest
import torch

from vssl.train.snapshot import StateSnapshot


def state(device: str = "cpu") -> dict:
    conv = torch.randn(8, 3, 3, 3, device=device).to(memory_format=torch.channels_last)
    return {
        "model": {"conv.weight": conv, "bn.num_batches_tracked": torch.tensor(7, device=device)},
        "optimizer": {"state": {0: {"momentum": torch.randn(8, device=device)}}, "lr": 0.1},
        "rng": (torch.arange(4, dtype=torch.uint8), [1, 2]),
        "history": [{"epoch": 1, "loss": 2.5}],
        "note": "plain values are kept as given",
    }


def flat(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in flat(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in flat(v)]
    return []


def test_the_copy_keeps_the_state_of_its_update_and_its_structure():
    snap = StateSnapshot()
    assert snap.read() is None
    src = state()
    want = [t.clone() for t in flat(src)]
    snap.update(src)
    for t in flat(src):  # training goes on in place
        t.add_(1)
    got = snap.read()
    assert [torch.equal(a, b) for a, b in zip(flat(got), want, strict=True)] == [True] * len(want)
    assert isinstance(got["rng"], tuple) and isinstance(got["rng"][1], list)
    assert got["optimizer"]["lr"] == 0.1 and got["note"] == src["note"]
    assert got["history"] == [{"epoch": 1, "loss": 2.5}] and got["history"] is not src["history"]
    assert all(t.device.type == "cpu" for t in flat(got))
    # the layout is the source's: a channels-last weight is copied as one block
    assert got["model"]["conv.weight"].stride() == src["model"]["conv.weight"].stride()
    assert snap.nbytes == sum(t.numel() * t.element_size() for t in want)


def test_buffers_are_reused_and_replaced_only_when_a_tensor_changes_shape():
    snap = StateSnapshot()
    src = state()
    snap.update(src)
    before = [t.data_ptr() for t in flat(snap.read())]
    src["model"]["conv.weight"].mul_(0)
    snap.update(src)
    again = snap.read()
    assert [t.data_ptr() for t in flat(again)] == before  # refreshed in place
    assert torch.count_nonzero(again["model"]["conv.weight"]) == 0
    src["optimizer"]["state"][0]["momentum"] = torch.ones(5)
    snap.update(src)
    grown = snap.read()["optimizer"]["state"][0]["momentum"]
    assert grown.shape == (5,) and torch.equal(grown, torch.ones(5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_copies_are_pinned_asynchronous_and_see_exactly_the_updated_state():
    snap = StateSnapshot()
    src = state("cuda")
    big = torch.randn(64, 1024, 1024, device="cuda")  # 256 MB: the copy takes a while
    src["big"] = big
    want = [t.detach().cpu().clone() for t in flat(src)]
    snap.update(src)
    big.mul_(0)  # queued behind the copy on the same stream: the copy sees the old values
    got = snap.read()
    on_cuda = [t.is_cuda for t in flat(src)]
    assert [t.is_pinned() for t in flat(got)] == on_cuda  # the CPU RNG state needs no pinning
    assert all(torch.equal(a, b) for a, b in zip(flat(got), want, strict=True))
