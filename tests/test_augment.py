"""The two-view recipe: presets, and the CPU (torchvision v2) and batched (kornia) paths agree."""

from __future__ import annotations

import dataclasses

import kornia.augmentation as K
import pytest
import torch
from torchvision.transforms import v2

from vssl.augment import (
    PRESETS,
    GPUTwoViewAugment,
    TwoViewTransform,
    eval_transform,
    get_preset,
    view_ops,
)

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _stats(recipe):
    return (MEAN3, STD3) if recipe.channels == 3 else ((0.3,), (0.35,))


def _image(recipe, size=None, seed=0, batch=None):
    g = torch.Generator().manual_seed(seed)
    s = size or recipe.size
    shape = (recipe.channels, s, s) if batch is None else (batch, recipe.channels, s, s)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def _rng(r):
    return tuple(round(float(x), 6) for x in r)


def _cpu_ops(compose: v2.Compose) -> list[tuple[str, dict]]:
    """What the torchvision path really does, read back from the built transforms."""
    ops = []
    for t in compose.transforms:
        p = t.p if isinstance(t, v2.RandomApply) else getattr(t, "p", 1.0)
        inner = t.transforms[0] if isinstance(t, v2.RandomApply) else t
        if isinstance(inner, v2.RandomResizedCrop):
            ops.append(
                (
                    "crop",
                    {
                        "size": tuple(inner.size),
                        "scale": _rng(inner.scale),
                        "ratio": _rng(inner.ratio),
                    },
                )
            )
        elif isinstance(inner, v2.RandomHorizontalFlip):
            ops.append(("hflip", {"p": p}))
        elif isinstance(inner, v2.ColorJitter):
            rng = {
                k: _rng(getattr(inner, k)) for k in ("brightness", "contrast", "saturation", "hue")
            }
            ops.append(("jitter", {"p": p, **rng}))
        elif isinstance(inner, v2.RandomGrayscale):
            ops.append(("grayscale", {"p": p}))
        elif isinstance(inner, v2.GaussianBlur):
            ops.append(
                (
                    "blur",
                    {"p": p, "kernel_size": tuple(inner.kernel_size), "sigma": _rng(inner.sigma)},
                )
            )
        elif isinstance(inner, v2.RandomSolarize):
            ops.append(("solarize", {"p": p, "threshold": (inner.threshold, inner.threshold)}))
        elif isinstance(inner, (v2.ToDtype, v2.Normalize)):
            continue
        else:
            raise AssertionError(f"unexpected CPU op {inner}")
    return ops


def _gpu_ops(seq: torch.nn.Sequential) -> list[tuple[str, dict]]:
    """What the kornia path really does, read back from the built augmentation modules."""
    ops = []
    for t in seq:
        if isinstance(t, K.RandomResizedCrop):
            gen = t._param_generator
            ops.append(
                (
                    "crop",
                    {
                        "size": tuple(t.flags["size"]),
                        "scale": _rng(gen.scale),
                        "ratio": _rng(gen.ratio),
                    },
                )
            )
        elif isinstance(t, K.RandomHorizontalFlip):
            ops.append(("hflip", {"p": t.p}))
        elif isinstance(t, K.ColorJitter):
            b, c, s, h = (
                float(getattr(t, k)) for k in ("brightness", "contrast", "saturation", "hue")
            )
            rng = {"brightness": _rng((1 - b, 1 + b)), "contrast": _rng((1 - c, 1 + c))}
            rng |= {"saturation": _rng((1 - s, 1 + s)), "hue": _rng((-h, h))}
            ops.append(("jitter", {"p": t.p, **rng}))
        elif isinstance(t, K.RandomGrayscale):
            ops.append(("grayscale", {"p": t.p}))
        elif isinstance(t, K.RandomGaussianBlur):
            k = t.flags["kernel_size"]
            ops.append(
                ("blur", {"p": t.p, "kernel_size": (k, k), "sigma": _rng(t._param_generator.sigma)})
            )
        elif isinstance(t, K.RandomSolarize):
            d = t._param_generator.sampler_dict
            assert float(d["additions"].low) == float(d["additions"].high) == 0.0
            th = (float(d["thresholds"].low), float(d["thresholds"].high))
            ops.append(("solarize", {"p": t.p, "threshold": th}))
        else:
            raise AssertionError(f"unexpected GPU op {t}")
    return ops


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="known: cifar, stl, imagenet, grayscale"):
        get_preset("mnist")


def test_presets_follow_byol_and_solo_learn():
    cifar, stl, inet, gray = (get_preset(n) for n in ("cifar", "stl", "imagenet", "grayscale"))
    assert (cifar.size, stl.size, inet.size, gray.size) == (32, 96, 224, 28)
    assert gray.channels == 1 and cifar.channels == 3
    for r in (stl, inet):  # BYOL's asymmetric blur / solarisation
        assert (r.view1.blur_p, r.view1.solarize_p, r.view2.blur_p, r.view2.solarize_p) == (
            1.0,
            0.0,
            0.1,
            0.2,
        )
    assert inet.blur_kernel == 23 and inet.eval_resize == 256
    for r in (cifar, gray):  # solo-learn's CIFAR config: no blur
        assert (r.view1.blur_p, r.view2.blur_p, r.view1.solarize_p, r.view2.solarize_p) == (
            0.0,
            0.0,
            0.0,
            0.2,
        )
    for r in PRESETS.values():
        for v in r.views:
            assert v.crop_scale == (0.08, 1.0) and v.hflip_p == 0.5
            assert (v.jitter_p, v.brightness, v.contrast, v.saturation, v.hue) == (
                0.8,
                0.4,
                0.4,
                0.2,
                0.1,
            )
            assert v.grayscale_p == 0.2
    names = {n for v in gray.views for n, _ in view_ops(gray, v)}
    assert names.isdisjoint({"jitter", "grayscale"})  # no colour ops on 1-channel images
    assert [n for n, _ in view_ops(cifar, cifar.view2)] == [
        "crop",
        "hflip",
        "jitter",
        "grayscale",
        "solarize",
    ]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_both_paths_build_the_same_ops(preset):
    r = get_preset(preset)
    mean, std = _stats(r)
    cpu, gpu = TwoViewTransform(r, mean, std), GPUTwoViewAugment(r, mean, std)
    for cv, gv in ((cpu.view1, gpu.view1), (cpu.view2, gpu.view2)):
        c_ops, g_ops = _cpu_ops(cv), _gpu_ops(gv)
        assert c_ops == g_ops
        assert [n for n, _ in c_ops] == [
            n for n, _ in view_ops(r, r.view1 if cv is cpu.view1 else r.view2)
        ]
    assert _cpu_ops(cpu.view1) != _cpu_ops(cpu.view2)  # the views are asymmetric


def _deterministic(recipe, **over):
    """Every op on with p = 1 and no randomness left: identity-scale crop, fixed blur sigma."""
    v = dataclasses.replace(
        recipe.view1,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        hflip_p=1.0,
        jitter_p=0.0,
        blur_p=1.0,
        blur_sigma=(1.0, 1.0),
        solarize_p=1.0,
        grayscale_p=1.0,
        **over,
    )
    return dataclasses.replace(recipe, view1=v, view2=dataclasses.replace(v, hflip_p=0.0))


@pytest.mark.parametrize("preset, size", [("cifar", None), ("grayscale", None), ("cifar", 24)])
def test_both_paths_produce_the_same_pixels(preset, size):
    r = _deterministic(get_preset(preset))
    mean, std = _stats(r)
    batch = _image(r, size=size, batch=4)
    cpu = TwoViewTransform(r, mean, std)
    g1, g2 = GPUTwoViewAugment(r, mean, std)(batch)
    c = [cpu(img) for img in batch]
    c1, c2 = torch.stack([a for a, _ in c]), torch.stack([b for _, b in c])
    assert g1.shape == c1.shape == (4, r.channels, r.size, r.size)
    # grayscale weights differ in the 4th decimal (0.2989 vs 0.299); upsampling by 24 -> 32 is
    # bilinear in both; everything is divided by std (>= 0.2).
    tol = 2e-3 if size is None else 2e-2
    torch.testing.assert_close(g1, c1, atol=tol, rtol=0)
    torch.testing.assert_close(g2, c2, atol=tol, rtol=0)
    assert not torch.allclose(g1, g2)  # the flip differs between the views


def test_views_are_normalised_floats_of_recipe_size():
    r = get_preset("cifar")
    img = _image(r, size=40)
    torch.manual_seed(0)
    a, b = TwoViewTransform(r, MEAN3, STD3)(img)
    assert a.dtype == torch.float32 and a.shape == b.shape == (3, 32, 32)
    assert not torch.equal(a, b)
    x = (a * torch.tensor(STD3).view(3, 1, 1)) + torch.tensor(MEAN3).view(3, 1, 1)
    assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5  # de-normalised pixels lie in [0, 1]
    torch.manual_seed(0)
    a2, _ = TwoViewTransform(r, MEAN3, STD3)(img)
    assert torch.equal(a, a2)  # seeded


def test_gpu_path_is_seeded_and_per_sample():
    r = dataclasses.replace(get_preset("cifar"))
    aug = GPUTwoViewAugment(r, MEAN3, STD3)
    batch = _image(r, batch=8)
    torch.manual_seed(1)
    a, b = aug(batch)
    torch.manual_seed(1)
    a2, _ = aug(batch)
    assert torch.equal(a, a2)
    same = _image(r, batch=1).repeat(8, 1, 1, 1)
    v1, _ = aug(same)
    assert not torch.allclose(v1[0], v1[1])  # different parameters per sample


def test_gpu_path_flip_probability_is_per_sample():
    r = _deterministic(get_preset("grayscale"))
    r = dataclasses.replace(
        r, view1=dataclasses.replace(r.view1, hflip_p=0.5, blur_p=0.0, solarize_p=0.0)
    )
    batch = _image(r, batch=400)
    torch.manual_seed(0)
    v1, _ = GPUTwoViewAugment(r, (0.0,), (1.0,))(batch)
    x = batch.float() / 255
    flipped = torch.isclose(v1, x.flip(-1), atol=1e-4).flatten(1).all(1)
    kept = torch.isclose(v1, x, atol=1e-4).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert 0.4 < flipped.float().mean().item() < 0.6


def test_input_checks():
    r = get_preset("cifar")
    with pytest.raises(TypeError, match="uint8"):
        TwoViewTransform(r, MEAN3, STD3)(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        GPUTwoViewAugment(r, MEAN3, STD3)(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="3 channel"):
        GPUTwoViewAugment(r, (0.5,), (0.2,))


def test_eval_transform_resizes_and_centre_crops():
    r = get_preset("imagenet")
    img = _image(r, size=300)
    out = eval_transform(r, MEAN3, STD3)(img)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    g = get_preset("grayscale")
    img = _image(g)
    out = eval_transform(g, (0.3,), (0.35,))(img)
    torch.testing.assert_close(out, (img.float() / 255 - 0.3) / 0.35)  # 28 px: only normalise


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_path_on_cuda_matches_cpu_path():
    r = _deterministic(get_preset("cifar"))
    batch = _image(r, batch=4)
    aug = GPUTwoViewAugment(r, MEAN3, STD3).cuda()
    g1, _ = aug(batch.cuda())
    assert g1.device.type == "cuda"
    c1 = torch.stack([TwoViewTransform(r, MEAN3, STD3)(img)[0] for img in batch])
    torch.testing.assert_close(g1.cpu(), c1, atol=2e-3, rtol=0)
