"""The multi-tensor (``torch._foreach_*``) LARS and EMA agree with per-parameter references."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vssl.models.ema import ema_update, make_teacher
from vssl.train.optim import LARS, build_optimizer


class ReferenceLARS(torch.optim.Optimizer):
    """The per-parameter LARS this project used before the foreach version (kept verbatim)."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.02, eps=1e-8,
                 clip_lr=True):  # fmt: skip
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, eps=eps,
                        clip_lr=clip_lr, lars_exclude=False)  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not group["lars_exclude"]:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    trust = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                    if group["clip_lr"]:
                        trust = torch.clamp(trust / lr, max=1.0)
                    trust = torch.where((p_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    d_p = d_p.add(p, alpha=wd).mul_(trust)
                if mom > 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        state["momentum_buffer"].mul_(mom).add_(d_p)
                    d_p = state["momentum_buffer"]
                p.add_(d_p, alpha=-lr)


def reference_ema(teacher: nn.Module, student: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
            pt.mul_(tau).add_(ps.detach().to(pt.dtype), alpha=1.0 - tau)


class Net(nn.Module):
    """Conv + BatchNorm + Linear, one parameter whose gradient is always zero, one that is all
    zeros, and one frozen (no gradient: skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        self.unused = nn.Parameter(torch.randn(4, 4))  # zero gradient
        self.zero = nn.Parameter(torch.zeros(5, 8))  # |w| = 0: trust 1
        self.frozen = nn.Parameter(torch.randn(3), requires_grad=False)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(h) + h @ self.zero.t() + 0.0 * self.unused.sum()


def _pair(lr, wd, momentum, eta, clip_lr):
    torch.manual_seed(0)
    a = Net()
    b = copy.deepcopy(a)
    opt_a = build_optimizer("lars", a, lr=lr, weight_decay=wd, momentum=momentum, lars_eta=eta)
    skip = ("lr", "momentum", "eta", "eps", "clip_lr")
    groups = [{k: v for k, v in g.items() if k not in skip} for g in opt_a.param_groups]
    # the same parameter groups (regular + excluded bias/norm) over b's parameters
    index = {id(p): i for i, p in enumerate(a.parameters())}
    params_b = list(b.parameters())
    for g in groups:
        g["params"] = [params_b[index[id(p)]] for p in g["params"]]
    opt_b = ReferenceLARS(groups, lr=lr, momentum=momentum, weight_decay=wd, eta=eta,
                          clip_lr=clip_lr)  # fmt: skip
    for g in opt_a.param_groups:
        g["clip_lr"] = clip_lr
    return a, b, opt_a, opt_b


@pytest.mark.parametrize(
    "lr, wd, momentum, eta, clip_lr",
    [(0.5, 1e-4, 0.9, 0.02, True), (2.0, 0.1, 0.9, 0.02, True), (0.1, 1e-3, 0.0, 0.001, False),
     (5.0, 0.0, 0.5, 0.02, True)],
)  # fmt: skip
def test_foreach_lars_matches_the_per_parameter_reference(lr, wd, momentum, eta, clip_lr):
    a, b, opt_a, opt_b = _pair(lr, wd, momentum, eta, clip_lr)
    assert isinstance(opt_a, LARS) and len(opt_a.param_groups) == 2  # regular + excluded
    assert opt_a.param_groups[1]["lars_exclude"]
    g = torch.Generator().manual_seed(1)
    for step in range(6):
        x = torch.randn(16, 3, 8, 8, generator=g)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).mean().backward()
            opt.step()
        for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-6, msg=f"{name} step {step}")
    # the same state layout (checkpoints of either load into the other)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for key in sa["state"][k]:
            torch.testing.assert_close(sa["state"][k][key], sb["state"][k][key], atol=1e-6,
                                       rtol=1e-6)  # fmt: skip


def test_foreach_lars_resumes_from_a_state_dict():
    a, b, opt_a, opt_b = _pair(0.5, 1e-4, 0.9, 0.02, True)
    x = torch.randn(8, 3, 8, 8)
    for model, opt in ((a, opt_a), (b, opt_b)):
        model(x).pow(2).mean().backward()
        opt.step()
    fresh = LARS(
        [dict(g, params=list(g["params"])) for g in opt_a.param_groups], lr=0.5, weight_decay=1e-4
    )
    fresh.load_state_dict(opt_a.state_dict())
    for model, opt in ((a, fresh), (b, opt_b)):
        opt.zero_grad(set_to_none=True)
        model(x * 2).pow(2).mean().backward()
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-6)


def test_foreach_ema_matches_the_per_parameter_reference():
    torch.manual_seed(0)
    student = Net()
    teacher, reference = make_teacher(student), make_teacher(student)
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1)
    for step, tau in enumerate((0.99, 0.9, 0.5, 0.996, 1.0, 0.0, 0.7)):
        opt.zero_grad()
        student(torch.randn(4, 3, 8, 8)).pow(2).mean().backward()
        opt.step()
        ema_update(teacher, student, tau)
        reference_ema(reference, student, tau)
        for pt, pr in zip(teacher.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(pt, pr, atol=1e-6, rtol=1e-6, msg=f"step {step}")
    # the teacher's parameters stay frozen and distinct from the student's
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(
        pt.data_ptr() != ps.data_ptr()
        for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True)
    )


def test_ema_follows_a_restored_student():
    """load_state_dict keeps parameter objects: the cached lists stay right."""
    torch.manual_seed(0)
    student = Net()
    teacher = make_teacher(student)
    ema_update(teacher, student, 0.5)
    other = Net()
    student.load_state_dict(other.state_dict())
    ema_update(teacher, student, 0.0)
    for pt, ps in zip(teacher.parameters(), other.parameters(), strict=True):
        assert torch.equal(pt, ps)
    second = Net()  # another student for the same teacher: its own lists
    ema_update(teacher, second, 0.0)
    for pt, ps in zip(teacher.parameters(), second.parameters(), strict=True):
        assert torch.equal(pt, ps)
