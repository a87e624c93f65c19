"""The two-view recipe: presets, and the CPU (torchvision v2) and batched (kornia, plain tensor
ops) paths agree."""

from __future__ import annotations

import dataclasses

import kornia.augmentation as K
import pytest
import torch
from torchvision.transforms import v2

from vssl.augment import (
    PRESETS,
    GPUTwoViewAugment,
    TensorTwoViewAugment,
    TwoViewTransform,
    eval_transform,
    get_preset,
    view_ops,
)

BATCHED = [GPUTwoViewAugment, TensorTwoViewAugment]

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
    # the plain-tensor path keeps view_ops' lists as they are
    assert TensorTwoViewAugment(r, mean, std).ops == [dict(view_ops(r, v)) for v in r.views]


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


@pytest.mark.parametrize("cls", BATCHED)
@pytest.mark.parametrize("preset, size", [("cifar", None), ("grayscale", None), ("cifar", 24)])
def test_both_paths_produce_the_same_pixels(preset, size, cls):
    r = _deterministic(get_preset(preset))
    mean, std = _stats(r)
    batch = _image(r, size=size, batch=4)
    cpu = TwoViewTransform(r, mean, std)
    g1, g2 = cls(r, mean, std)(batch)
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


@pytest.mark.parametrize("cls", BATCHED)
def test_gpu_path_is_seeded_and_per_sample(cls):
    r = dataclasses.replace(get_preset("cifar"))
    aug = cls(r, MEAN3, STD3)
    batch = _image(r, batch=8)
    torch.manual_seed(1)
    a, b = aug(batch)
    torch.manual_seed(1)
    a2, _ = aug(batch)
    assert torch.equal(a, a2)
    same = _image(r, batch=1).repeat(8, 1, 1, 1)
    v1, _ = aug(same)
    assert not torch.allclose(v1[0], v1[1])  # different parameters per sample


@pytest.mark.parametrize("cls", BATCHED)
def test_gpu_path_flip_probability_is_per_sample(cls):
    r = _deterministic(get_preset("grayscale"))
    r = dataclasses.replace(
        r, view1=dataclasses.replace(r.view1, hflip_p=0.5, blur_p=0.0, solarize_p=0.0)
    )
    batch = _image(r, batch=400)
    torch.manual_seed(0)
    v1, _ = cls(r, (0.0,), (1.0,))(batch)
    x = batch.float() / 255
    flipped = torch.isclose(v1, x.flip(-1), atol=1e-4).flatten(1).all(1)
    kept = torch.isclose(v1, x, atol=1e-4).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert 0.4 < flipped.float().mean().item() < 0.6


def test_input_checks():
    r = get_preset("cifar")
    with pytest.raises(TypeError, match="uint8"):
        TwoViewTransform(r, MEAN3, STD3)(torch.rand(3, 32, 32))
    for cls in BATCHED:
        with pytest.raises(TypeError, match="uint8"):
            cls(r, MEAN3, STD3)(torch.rand(2, 3, 32, 32))
        with pytest.raises(ValueError, match="3 channel"):
            cls(r, (0.5,), (0.2,))


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
@pytest.mark.parametrize("cls", BATCHED)
def test_gpu_path_on_cuda_matches_cpu_path(cls):
    r = _deterministic(get_preset("cifar"))
    batch = _image(r, batch=4)
    aug = cls(r, MEAN3, STD3).cuda()
    g1, _ = aug(batch.cuda())
    assert g1.device.type == "cuda"
    c1 = torch.stack([TwoViewTransform(r, MEAN3, STD3)(img)[0] for img in batch])
    torch.testing.assert_close(g1.cpu(), c1, atol=2e-3, rtol=0)


# --- the plain-tensor batched path against torchvision, statistically and pinned ----------------


def _only(recipe, **over):
    """Both views of ``recipe`` with the given fields replaced."""
    return dataclasses.replace(
        recipe,
        view1=dataclasses.replace(recipe.view1, **over),
        view2=dataclasses.replace(recipe.view2, **over),
    )


def _tv_crops(size, n, hw, scale, ratio, seed):
    """``n`` torchvision RandomResizedCrop boxes (top, left, h, w) for an image of ``hw``."""
    t = v2.RandomResizedCrop(size, scale=scale, ratio=ratio)
    img = torch.zeros(3, *hw, dtype=torch.uint8)
    torch.manual_seed(seed)
    rows = []
    for _ in range(n):
        p = t.make_params([img])
        rows.append((p["top"], p["left"], p["height"], p["width"]))
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    "hw, scale", [((32, 32), (0.08, 1.0)), ((24, 40), (0.08, 1.0)), ((24, 40), (0.7, 1.0))]
)
def test_tensor_crop_boxes_follow_torchvision(hw, scale):
    """Area, aspect ratio and position of the crop boxes: two-sample KS tests against
    torchvision's own sampler (the non-square cases exercise the fallback box)."""
    from scipy.stats import ks_2samp

    r = _only(get_preset("cifar"), crop_scale=scale)
    n = 3000
    torch.manual_seed(0)
    p = TensorTwoViewAugment(r, MEAN3, STD3).sample(n // 2, *hw, "cpu")
    ours = torch.stack([p["top"], p["left"], p["h"], p["w"]], 1).double()
    ref = _tv_crops(r.size, n, hw, scale, r.view1.crop_ratio, seed=1)
    height, width = hw
    assert (ours[:, 2] >= 1).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 3] >= 1).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    assert torch.equal(ours, ours.round())  # integer boxes, as torchvision's

    def stats(b):
        return {
            "area": b[:, 2] * b[:, 3] / (height * width),
            "aspect": b[:, 3] / b[:, 2],
            "top": (b[:, 0] + b[:, 2] / 2) / height,  # box centre
            "left": (b[:, 1] + b[:, 3] / 2) / width,
        }

    so, sr = stats(ours), stats(ref)
    for k in so:
        res = ks_2samp(so[k].numpy(), sr[k].numpy())
        assert res.pvalue > 1e-3, (k, res)
        for q in (0.1, 0.5, 0.9):  # and the quantiles agree closely
            a, b = torch.quantile(so[k], q), torch.quantile(sr[k], q)
            assert abs(float(a - b)) < 0.06 * max(1.0, abs(float(b))), (k, q, a, b)


def test_tensor_path_rates_and_jitter_ranges_follow_the_recipe():
    """Per-view apply rates (flip, jitter, grayscale, solarize, blur) within 5 binomial sigmas,
    jitter factors uniform over torchvision's ranges, each image's op order a uniform random
    permutation (as torchvision's ColorJitter draws per call)."""
    from scipy.stats import kstest

    r = dataclasses.replace(
        get_preset("stl"), view2=dataclasses.replace(get_preset("stl").view2, hue=0.05)
    )
    b = 4000
    torch.manual_seed(0)
    p = TensorTwoViewAugment(r, MEAN3, STD3).sample(b, 96, 96, "cpu")
    for vi, view in enumerate(r.views):
        rows = slice(vi * b, (vi + 1) * b)
        for key, prob in (
            ("flip", view.hflip_p),
            ("jitter", view.jitter_p),
            ("gray", view.grayscale_p),
            ("blur", view.blur_p),
            ("solarize", view.solarize_p),
        ):
            rate = p[key][rows].double().mean().item()
            sigma = max((prob * (1 - prob) / b) ** 0.5, 1e-12)
            assert abs(rate - prob) <= 5 * sigma, (vi, key, rate, prob)
        f = p["factors"][rows].double()
        ranges = [
            (1 - view.brightness, 1 + view.brightness),
            (1 - view.contrast, 1 + view.contrast),
            (1 - view.saturation, 1 + view.saturation),
            (-view.hue, view.hue),
        ]
        for j, (lo, hi) in enumerate(ranges):
            col = f[:, j]
            assert lo <= col.min() and col.max() <= hi
            assert kstest(col.numpy(), "uniform", args=(lo, hi - lo)).pvalue > 1e-3, (vi, j)
        lo, hi = view.blur_sigma
        sig = p["sigma"][rows].double()
        assert lo <= sig.min() and sig.max() <= hi
        assert kstest(sig.numpy(), "uniform", args=(lo, hi - lo)).pvalue > 1e-3
    order = p["order"]
    assert torch.equal(order.sort(1).values, torch.arange(4).expand(2 * b, 4))  # permutations
    for slot in range(4):  # every op equally likely in every slot
        freq = torch.bincount(order[:, slot], minlength=4).double() / (2 * b)
        assert (freq - 0.25).abs().max() < 5 * (0.25 * 0.75 / (2 * b)) ** 0.5
    assert len({tuple(o) for o in order.tolist()}) == 24


def test_tensor_path_pixel_statistics_match_the_cpu_path():
    """The real cifar recipe end to end on 1000 images: per-channel means of the views agree
    with the per-sample torchvision path within 5 standard errors, their spread within 5% and
    the share of grey images (grayscale op) within 5 binomial sigmas."""
    r = get_preset("cifar")
    g = torch.Generator().manual_seed(0)
    n = 1000
    # Smooth, colourful images (a random colour per image plus a gradient): real-ish statistics.
    base = torch.rand(n, 3, 1, 1, generator=g) * 200 + 20
    ramp = torch.linspace(-20, 20, 32).view(1, 1, 1, 32)
    batch = (base + ramp + torch.randn(n, 3, 32, 32, generator=g) * 8).clamp(0, 255)
    batch = batch.to(torch.uint8)
    torch.manual_seed(0)
    t1, t2 = TensorTwoViewAugment(r, MEAN3, STD3)(batch)
    cpu = TwoViewTransform(r, MEAN3, STD3)
    torch.manual_seed(0)
    c = [cpu(img) for img in batch]
    c1, c2 = torch.stack([a for a, _ in c]), torch.stack([b for _, b in c])

    def grey(v):
        x = v * torch.tensor(STD3).view(1, 3, 1, 1) + torch.tensor(MEAN3).view(1, 3, 1, 1)
        return ((x.amax(1) - x.amin(1)) < 1e-3).flatten(1).all(1).double()

    for t, cc in ((t1, c1), (t2, c2)):
        mt, mc = t.mean((2, 3)).double(), cc.mean((2, 3)).double()  # per image and channel
        se = ((mt.var(0) + mc.var(0)) / n).sqrt()
        assert ((mt.mean(0) - mc.mean(0)).abs() < 5 * se).all(), (mt.mean(0), mc.mean(0), se)
        torch.testing.assert_close(t.std((0, 2, 3)), cc.std((0, 2, 3)), atol=0, rtol=0.05)
        gt, gc = grey(t).mean(), grey(cc).mean()
        assert 0.1 < gc < 0.3  # grayscale p = 0.2 (jitter leaves grey images grey)
        assert abs(float(gt - gc)) < 5 * (2 * 0.2 * 0.8 / n) ** 0.5


def test_tensor_path_is_deterministic_under_manual_seed():
    r = get_preset("stl")
    aug = TensorTwoViewAugment(r, MEAN3, STD3)
    batch = _image(r, batch=6)
    torch.manual_seed(5)
    a1, a2 = aug(batch)
    b1, b2 = aug(batch)  # the global RNG moved on: other views
    torch.manual_seed(5)
    c1, c2 = aug(batch)
    assert torch.equal(a1, c1) and torch.equal(a2, c2)
    assert not torch.equal(a1, b1)
    assert a1.is_contiguous(memory_format=torch.channels_last)
    plain = TensorTwoViewAugment(r, MEAN3, STD3, channels_last=False)
    torch.manual_seed(5)
    d1, _ = plain(batch)
    assert d1.is_contiguous() and torch.equal(d1, a1)


def _pin(p, **values):
    """Sampled parameters with some replaced by constants (bool or float per image)."""
    out = dict(p)
    for k, v in values.items():
        out[k] = torch.full_like(p[k], v) if not isinstance(v, torch.Tensor) else v
    return out


def test_tensor_crop_and_flip_pixels_match_torchvision_for_its_boxes():
    """Random boxes (read back) through torchvision's resized_crop (+ flip) give our pixels:
    exactly on float images, to one grey level on uint8 ones (torchvision rounds its uint8
    resize)."""
    from torchvision.transforms.v2 import functional as TF

    r = _only(get_preset("cifar"), jitter_p=0.0, grayscale_p=0.0, solarize_p=0.0)
    aug = TensorTwoViewAugment(r, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    batch = _image(r, batch=48)
    torch.manual_seed(3)
    p = aug.sample(48, 32, 32, "cpu")
    out = torch.cat(aug.apply(batch, p))
    assert 0 < p["flip"].sum() < 96
    for k in range(96):
        img = batch[k % 48]
        box = [int(p[q][k]) for q in ("top", "left", "h", "w")]
        ref_f = TF.resized_crop(img.float() / 255, *box, [32, 32], antialias=True)
        ref_u = TF.resized_crop(img, *box, [32, 32], antialias=True).float() / 255
        if p["flip"][k]:
            ref_f, ref_u = ref_f.flip(-1), ref_u.flip(-1)
        torch.testing.assert_close(out[k], ref_f, atol=1e-5, rtol=0)
        torch.testing.assert_close(out[k], ref_u, atol=1.01 / 255, rtol=0)


def test_tensor_jitter_pixels_match_torchvision_in_each_images_order():
    """Colour jitter with every image's factors and op order pinned (read back) equals
    torchvision's brightness/contrast/saturation/hue functions applied in that order."""
    from torchvision.transforms.v2 import functional as TF

    r = _only(get_preset("cifar"), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0)
    r = _only(r, jitter_p=1.0, grayscale_p=0.0, solarize_p=0.0, hue=0.3)
    aug = TensorTwoViewAugment(r, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    batch = _image(r, batch=120)
    torch.manual_seed(4)
    p = aug.sample(120, 32, 32, "cpu")
    out = torch.cat(aug.apply(batch, p))
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for k in range(240):
        ref = batch[k % 120].float() / 255
        for op in p["order"][k].tolist():
            ref = fns[op](ref, float(p["factors"][k, op]))
        torch.testing.assert_close(out[k], ref, atol=2e-5, rtol=0)
    # jitter off for an image: untouched
    off = torch.cat(aug.apply(batch, _pin(p, jitter=False)))
    torch.testing.assert_close(off, torch.cat([batch, batch]).float() / 255, atol=1e-6, rtol=0)


def test_tensor_blur_grayscale_solarize_pixels_match_torchvision():
    """Per-image sigma (read back) through torchvision's gaussian_blur, then grayscale and
    solarisation, each pinned on."""
    from torchvision.transforms.v2 import functional as TF

    r = _only(get_preset("stl"), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0)
    r = _only(r, jitter_p=0.0, grayscale_p=0.5, blur_p=0.5, solarize_p=0.5, blur_sigma=(0.1, 2))
    aug = TensorTwoViewAugment(r, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    batch = _image(r, batch=10)
    torch.manual_seed(6)
    p = _pin(aug.sample(10, 96, 96, "cpu"), gray=True, blur=True, solarize=True)
    out = torch.cat(aug.apply(batch, p))
    k_size = r.blur_kernel
    for k in range(20):
        ref = batch[k % 10].float() / 255
        ref = TF.gaussian_blur(ref, [k_size, k_size], [float(p["sigma"][k])] * 2)
        ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        ref = TF.solarize(ref, threshold=r.view1.solarize_threshold)
        torch.testing.assert_close(out[k], ref, atol=2e-5, rtol=0)
