"""Split augmentation for image folders: decode, crop and flip per sample in the DataLoader
workers (:class:`TwoViewCrops`), the photometric ops batched on the device
(:meth:`TensorTwoViewAugment.photometric`). Same ops, parameters and distribution as the
per-sample path; views a function of (seed, epoch) only, as resuming needs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vssl.augment import TensorTwoViewAugment, TwoViewCrops, TwoViewTransform, get_preset
from vssl.cli import main
from vssl.data import TensorImageDataset
from vssl.train.loader import TrainBatches

ROOT = Path(__file__).resolve().parents[1]
MEAN3, STD3 = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _only(recipe, **over):
    return dataclasses.replace(
        recipe,
        view1=dataclasses.replace(recipe.view1, **over),
        view2=dataclasses.replace(recipe.view2, **over),
    )


def _smooth_images(n: int, h: int, w: int, seed: int = 0, lo: float = 20) -> torch.Tensor:
    """Colourful, smooth uint8 images (a colour per image in [lo, 220], a ramp, noise) of a size
    that is not the recipe's, as an image folder holds."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * (220 - lo) + lo
    ramp = torch.linspace(-20, 20, w).view(1, 1, 1, w)
    return (base + ramp + torch.randn(n, 3, h, w, generator=g) * 8).clamp(0, 255).to(torch.uint8)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    m, s = torch.tensor(MEAN3).view(-1, 1, 1), torch.tensor(STD3).view(-1, 1, 1)
    return (x.float() / 255 - m) / s


def test_crops_are_the_per_sample_paths_geometry():
    """With the photometric ops off, the per-sample path is crop + flip + normalise: under one
    seed its views equal TwoViewCrops' normalised, and photometric() only normalises them."""
    r = _only(get_preset("stl"), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
    images = _smooth_images(12, 70, 90)
    full, crops = TwoViewTransform(r, MEAN3, STD3), TwoViewCrops(r)
    aug = TensorTwoViewAugment(r, MEAN3, STD3)
    c1s, c2s = [], []
    for k, img in enumerate(images):
        torch.manual_seed(k)
        v1, v2 = full(img)
        torch.manual_seed(k)
        c1, c2 = crops(img)
        assert c1.dtype == torch.uint8 and c1.shape == (3, 96, 96) == c2.shape
        torch.testing.assert_close(_normalise(c1), v1, atol=1e-5, rtol=0)
        torch.testing.assert_close(_normalise(c2), v2, atol=1e-5, rtol=0)
        c1s.append(c1)
        c2s.append(c2)
    p1, p2 = aug.photometric(torch.stack(c1s), torch.stack(c2s))
    torch.testing.assert_close(p1, torch.stack([_normalise(c) for c in c1s]), atol=1e-5, rtol=0)
    torch.testing.assert_close(p2, torch.stack([_normalise(c) for c in c2s]), atol=1e-5, rtol=0)
    assert p1.is_contiguous(memory_format=torch.channels_last)


def test_photometric_is_the_batched_paths_second_half():
    """On views that need no crop (full-size box, no flip), photometric ops under the same
    parameters give the batched path's pixels: the same code after the crop."""
    r = _only(get_preset("stl"), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0)
    aug = TensorTwoViewAugment(r, MEAN3, STD3)
    x = _smooth_images(16, 96, 96)
    torch.manual_seed(2)
    p = aug.sample(16, 96, 96, "cpu")
    assert p["jitter"].any() and p["blur"].any() and p["solarize"].any()
    a1, a2 = aug.apply(x, p)
    b1, b2 = aug.apply_photometric(x, x, p)
    torch.testing.assert_close(b1, a1, atol=2e-5, rtol=0)
    torch.testing.assert_close(b2, a2, atol=2e-5, rtol=0)
    # and photometric() draws like forward(): the same seed, the same parameters
    torch.manual_seed(2)
    c1, c2 = aug.photometric(x, x)
    assert torch.equal(c1, b1) and torch.equal(c2, b2)


def test_split_views_match_the_per_sample_statistics():
    """BYOL's 96-px recipe (blur, solarisation) on 600 bright images of 80 x 112 px, each view:
    per-image channel means (which solarisation moves), contrast (pixel std) and sharpness
    (mean |difference| of neighbouring pixels, which blur lowers) of the split path's views
    follow the per-sample path's (means within 5 standard errors, two-sample KS p > 1e-3), and
    the share of grey images agrees within 5 binomial sigmas."""
    from scipy.stats import ks_2samp

    r = get_preset("stl")
    n = 600
    images = _smooth_images(n, 80, 112, seed=1, lo=140)
    full, crops = TwoViewTransform(r, MEAN3, STD3), TwoViewCrops(r)
    torch.manual_seed(0)
    c = [full(img) for img in images]
    f1, f2 = torch.stack([a for a, _ in c]), torch.stack([b for _, b in c])
    torch.manual_seed(1)
    cc = [crops(img) for img in images]
    s1, s2 = TensorTwoViewAugment(r, MEAN3, STD3).photometric(
        torch.stack([a for a, _ in cc]), torch.stack([b for _, b in cc])
    )

    def contrast(v):
        return v.std((1, 2, 3)).double()

    def sharpness(v):
        return (v[..., 1:] - v[..., :-1]).abs().mean((1, 2, 3)).double()

    def grey(v):
        x = v * torch.tensor(STD3).view(1, 3, 1, 1) + torch.tensor(MEAN3).view(1, 3, 1, 1)
        return ((x.amax(1) - x.amin(1)) < 1e-3).flatten(1).all(1).double()

    for s, f in ((s1, f1), (s2, f2)):
        ms, mf = s.mean((2, 3)).double(), f.mean((2, 3)).double()
        se = ((ms.var(0) + mf.var(0)) / n).sqrt()
        assert ((ms.mean(0) - mf.mean(0)).abs() < 5 * se).all(), (ms.mean(0), mf.mean(0), se)
        for k in range(3):
            assert ks_2samp(ms[:, k].numpy(), mf[:, k].numpy()).pvalue > 1e-3
        for stat in (contrast, sharpness):
            cs, cf = stat(s), stat(f)
            se = float(((cs.var() + cf.var()) / n).sqrt())
            assert abs(float(cs.mean() - cf.mean())) < 5 * se, (stat, cs.mean(), cf.mean())
            assert ks_2samp(cs.numpy(), cf.numpy()).pvalue > 1e-3, stat
        gs, gf = grey(s).mean(), grey(f).mean()
        assert 0.1 < gf < 0.3  # grayscale p = 0.2
        assert abs(float(gs - gf)) < 5 * (2 * 0.2 * 0.8 / n) ** 0.5


def test_photometric_checks_its_input():
    aug = TensorTwoViewAugment(get_preset("cifar"), MEAN3, STD3)
    ok = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"both views as \(4, 3, 32, 32\), got view 2 \(4, 3, 28"):
        aug.photometric(ok, torch.zeros(4, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        aug.photometric(ok, ok.float())
    with pytest.raises(TypeError, match="TwoViewCrops expects a uint8"):
        TwoViewCrops(get_preset("cifar"))(ok[0].float())


def _split_batches(dataset, workers: int) -> TrainBatches:
    return TrainBatches(
        {"dataset": dataset},
        get_preset("cifar"),
        MEAN3,
        STD3,
        gpu_augment=True,
        device=torch.device("cpu"),
        seed=5,
        global_batch=16,
        accum=2,
        world=1,
        rank=0,
        num_workers=workers,
    )


def test_split_epochs_depend_on_seed_and_epoch_only():
    """An image-folder source with gpu_augment takes the split path; an epoch's micro-batches
    are the same however often it is drawn and however many workers draw it (what an exact
    resume needs), whatever the global RNG's state, and differ between epochs."""
    images = _smooth_images(40, 36, 44)
    dataset = TensorImageDataset(images, torch.arange(40) % 4)
    b0 = _split_batches(dataset, workers=0)
    assert b0.mode == "split"
    torch.manual_seed(0)
    e1 = list(b0.epoch(1))
    assert len(e1) == 2 * 2  # 40 // 16 steps x 2 micro-batches
    for x1, x2, y in e1:
        assert x1.shape == x2.shape == (8, 3, 32, 32) and x1.dtype == torch.float32
        assert y.shape == (8,) and not torch.equal(x1, x2)
    torch.manual_seed(1)
    again = list(_split_batches(dataset, workers=2).epoch(1))
    for (a1, a2, ay), (b1, b2, by) in zip(e1, again, strict=True):
        assert torch.equal(a1, b1) and torch.equal(a2, b2) and torch.equal(ay, by)
    e2 = list(b0.epoch(2))
    assert not torch.equal(e1[0][0], e2[0][0])


def _fake_imagenet(root: Path, per_class: int) -> None:
    from PIL import Image

    from vssl.data.registry import imagenet100_classes

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 1)):
        for w in imagenet100_classes():
            d = root / "imagenet100" / split / w
            d.mkdir(parents=True)
            for j in range(n):
                img = rng.integers(0, 256, (30 + j, 40, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"{w}_{j}.JPEG", quality=90)


def _folder_run(out: Path, method: str, epochs: int, sets: tuple[str, ...], *extra: str) -> list:
    """`vssl pretrain` arguments for ImageNet-100 (a fake folder) at the smoke profile."""
    args = ["pretrain", "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]
    args += ["--dataset", "imagenet100", "--method", method, "--seed", "0"]
    args += ["--epochs", str(epochs), "--out", str(out), "--no-mlflow", *extra]
    for s in ("data.train_subset=null", "data.test_subset=null", "pretrain.knn_every=0", *sets):
        args += ["--set", s]
    return args


@pytest.mark.parametrize(("setting", "mode"), [("auto", "per_sample"), ("true", "split")])
def test_image_folder_pretraining_picks_the_augmentation_path(tmp_path, monkeypatch, setting, mode):
    """On the CPU `auto` keeps image folders per sample in the workers; `true` splits them
    (it used to be refused); both train."""
    _fake_imagenet(tmp_path, per_class=1)
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    out = tmp_path / "run"
    sets = ("pretrain.batch_size=50", f"pretrain.gpu_augment={setting}")
    assert main(_folder_run(out, "byol", 1, sets)) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["augment"] == mode and m["gpu_augment"] is (mode == "split")
    assert np.isfinite(m["loss"])


def test_split_image_folder_run_resumes_exactly(tmp_path, monkeypatch):
    """The split path under `--stop-after 1` then `--resume` gives the weights of an
    uninterrupted run, bit for bit (crops seeded per sample, photometric ops per micro-batch)."""
    _fake_imagenet(tmp_path, per_class=1)
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))

    sets = ("pretrain.batch_size=24", "pretrain.grad_accum_steps=2", "pretrain.gpu_augment=true")

    def run(out: Path, *extra: str) -> None:
        assert main(_folder_run(out, "vssl", 2, sets, *extra)) == 0

    run(tmp_path / "full")
    run(tmp_path / "split", "--stop-after", "1")
    run(tmp_path / "split", "--resume")
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_on_another_augmentation_path_warns(tmp_path, monkeypatch, caplog):
    """A checkpoint remembers its augmentation path; resuming an image-folder run on another
    one (here a checkpoint from before the split path, which has no record of it, resumed
    split) says that the numbers will not match an uninterrupted run."""
    import logging

    from vssl.train.checkpoint import load_checkpoint

    _fake_imagenet(tmp_path, per_class=1)
    monkeypatch.setenv("VSSL_DATA_ROOT", str(tmp_path))
    out = tmp_path / "run"
    base = _folder_run(out, "byol", 2, ("pretrain.batch_size=50", "pretrain.gpu_augment=true"))
    assert main([*base, "--stop-after", "1"]) == 0
    partial = out / "checkpoint.partial.pt"
    ck = load_checkpoint(partial)
    assert ck["augment"] == "split"
    caplog.set_level(logging.WARNING, logger="vssl")
    assert main([*base, "--resume"]) == 0  # same path: no warning
    assert "augmented" not in caplog.text
    assert main([*base, "--stop-after", "1", "--overwrite"]) == 0
    ck = torch.load(partial, weights_only=True)
    del ck["augment"]  # as written before the split path existed
    torch.save(ck, partial)
    assert main([*base, "--resume"]) == 0
    assert "resuming a run augmented per_sample with split augmentation" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_split_half_does_not_synchronise_and_compiles_to_the_same_views():
    """On CUDA the photometric half reads nothing back to the host in steady state, and its
    compiled form (what the engine runs) gives the eager views under the same seed."""
    r = get_preset("imagenet")
    eager = TensorTwoViewAugment(r, MEAN3, STD3).cuda()
    compiled = TensorTwoViewAugment(r, MEAN3, STD3).cuda()
    compiled.compile_ops()
    x1 = _smooth_images(32, 224, 224).cuda()
    x2 = x1.flip(-1).contiguous()
    for aug in (eager, compiled):  # warm-up (and compile)
        aug.photometric(x1, x2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for aug in (eager, compiled):
            torch.manual_seed(9)
            aug.photometric(x1, x2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.manual_seed(9)
    a1, a2 = eager.photometric(x1, x2)
    torch.manual_seed(9)
    b1, b2 = compiled.photometric(x1, x2)
    torch.testing.assert_close(b1, a1, atol=1e-4, rtol=0)
    torch.testing.assert_close(b2, a2, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_split_epoch_prefetch_delivers_each_batchs_own_views():
    """On CUDA the crops reach the device a batch ahead on a side stream: every micro-batch
    must still be exactly the photometric half of its own crops under its own seed."""
    from vssl.train.loader import AUGMENT, epoch_micro_batches, mix_seed

    dataset = TensorImageDataset(_smooth_images(64, 36, 44), torch.arange(64) % 4)
    b = TrainBatches(
        {"dataset": dataset}, get_preset("cifar"), MEAN3, STD3, gpu_augment=True,
        device=torch.device("cuda"), seed=5, global_batch=16, accum=2, world=1, rank=0,
        num_workers=2,
    )  # fmt: skip
    got = list(b.epoch(1))
    plan = epoch_micro_batches(64, 16, 2, 1, 0, 5, 1)
    ref_aug = TensorTwoViewAugment(get_preset("cifar"), MEAN3, STD3).cuda()
    for k, (x1, x2, y) in enumerate(got):
        s, m = divmod(k, 2)
        items = [b.dataset[(1, int(i))] for i in plan[s][m]]
        c1 = torch.stack([c for (c, _), _ in items]).cuda()
        c2 = torch.stack([c for (_, c), _ in items]).cuda()
        torch.manual_seed(mix_seed(5, AUGMENT, 1, s, m, 0))
        r1, r2 = ref_aug.photometric(c1, c2)
        assert torch.equal(x1, r1) and torch.equal(x2, r2)
        assert torch.equal(y.cpu(), torch.tensor([lab for _, lab in items]))
