"""Backbones, heads and the EMA teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from vssl.models import MLP, GaussianHead, build_backbone, cosine_tau, ema_update, make_teacher


@pytest.mark.parametrize(
    "name, width, in_ch, size, feat",
    [("resnet18", 4, 1, 28, 32), ("resnet18", 8, 3, 32, 64), ("resnet50", 4, 3, 16, 128)],
)
def test_backbone_output_shape(name, width, in_ch, size, feat):
    net, dim = build_backbone(name, width=width, in_channels=in_ch, image_size=size)
    assert dim == feat
    out = net(torch.randn(2, in_ch, size, size))
    assert out.shape == (2, feat)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_width64_imagenet_stem_is_torchvisions_resnet(name):
    # Same modules, names and shapes as torchvision's builder, fc excluded.
    ours, dim = build_backbone(name, width=64, image_size=224, cifar_stem="auto")
    ref = getattr(torchvision.models, name)(weights=None)
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref_shapes
    assert dim == ref.fc.in_features


def test_cifar_stem_auto():
    small, _ = build_backbone("resnet18", width=4, image_size=32)
    big, _ = build_backbone("resnet18", width=4, image_size=96)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    forced, _ = build_backbone("resnet18", width=4, image_size=96, cifar_stem=True)
    assert forced.conv1.kernel_size == (3, 3)
    # the CIFAR stem keeps spatial resolution into layer1
    x = torch.randn(1, 3, 32, 32)
    assert small.maxpool(small.relu(small.bn1(small.conv1(x)))).shape[-1] == 32


def test_width_scales_every_stage():
    net, _ = build_backbone("resnet18", width=8, in_channels=1)
    assert net.conv1.in_channels == 1
    assert [getattr(net, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [8, 16, 32, 64]


def test_unknown_backbone_lists_known():
    with pytest.raises(ValueError, match="resnet18.*resnet50"):
        build_backbone("vit_tiny")


def test_backbone_init_is_seeded():
    torch.manual_seed(3)
    a, _ = build_backbone("resnet18", width=4)
    torch.manual_seed(3)
    b, _ = build_backbone("resnet18", width=4)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_mlp_layouts():
    byol = MLP(8, 16, 4)
    assert [type(m) for m in byol] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    moco = MLP(8, 16, 4, bias=False, last_bn=True)
    assert [type(m) for m in moco] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
    ]
    assert moco[0].bias is None and not moco[-1].affine
    barlow = MLP(8, 16, 4, num_layers=3)
    assert sum(isinstance(m, nn.Linear) for m in barlow) == 3
    assert barlow(torch.randn(5, 8)).shape == (5, 4)


def test_gaussian_head_bounds_logvar():
    head = GaussianHead(6, 3, logvar_min=-8.0, logvar_max=4.0)
    h = torch.randn(10, 6) * 1e4  # saturates the sigmoid both ways
    mu, logvar = head(h)
    assert mu.shape == logvar.shape == (10, 3)
    assert torch.isfinite(logvar).all()
    assert logvar.min() >= -8.0 and logvar.max() <= 4.0
    assert logvar.min() < -7.9 and logvar.max() > 3.9  # both bounds are reachable
    with pytest.raises(ValueError, match="logvar_min < logvar_max"):
        GaussianHead(6, 3, logvar_min=1.0, logvar_max=1.0)


def test_make_teacher_is_frozen_copy():
    student = MLP(4, 8, 2)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
        assert torch.equal(ps, pt) and ps.data_ptr() != pt.data_ptr()


def test_ema_update_formula_and_end_points():
    torch.manual_seed(0)
    student, teacher = MLP(4, 8, 2), MLP(4, 8, 2)
    for p in teacher.parameters():
        p.requires_grad_(False)
    t0 = [p.clone() for p in teacher.parameters()]
    s = [p.detach().clone() for p in student.parameters()]
    ema_update(teacher, student, 0.9)
    for pt, a, b in zip(teacher.parameters(), t0, s, strict=True):
        torch.testing.assert_close(pt, 0.9 * a + 0.1 * b, rtol=1e-6, atol=1e-7)
    t1 = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 1.0)  # tau = 1: the teacher does not move
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), t1, strict=True))
    ema_update(teacher, student, 0.0)  # tau = 0: the teacher becomes the student
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), s, strict=True))
    with pytest.raises(ValueError, match="tau"):
        ema_update(teacher, student, 1.5)
    with pytest.raises(ValueError, match="parameter names"):
        ema_update(MLP(4, 8, 2, num_layers=3), student, 0.5)


def test_cosine_tau_schedule():
    assert cosine_tau(0, 100, 0.99, 1.0) == 0.99
    assert cosine_tau(100, 100, 0.99, 1.0) == 1.0
    assert cosine_tau(0, 100, 0.996, 0.999) == 0.996
    assert cosine_tau(100, 100, 0.996, 0.999) == 0.999
    assert cosine_tau(500, 100, 0.99, 1.0) == 1.0  # clamped past the end
    assert cosine_tau(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    taus = [cosine_tau(k, 100, 0.99, 1.0) for k in range(101)]
    assert all(a <= b for a, b in zip(taus, taus[1:], strict=False))
