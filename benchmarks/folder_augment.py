"""Image-folder augmentation (ImageNet-100's data path): per sample against split, per core.

Times, on an ImageFolder of JPEGs (``--root``, an ``imagenet100/train`` tree; without it a
synthetic one of ``--images`` photo-sized JPEGs is written to a temporary folder):

- ``decode``: the dataset's loader alone (PIL decode to a uint8 tensor), one core;
- ``per_sample``: decode + the whole two-view recipe per sample (``pretrain.gpu_augment:
  false``; what ``auto`` does on the CPU), one core;
- ``split workers``: decode + both views' crop and flip (:class:`vssl.augment.TwoViewCrops`,
  what each DataLoader worker does under ``gpu_augment: true``), one core;
- ``split device``: the photometric rest on a batch of cropped views
  (:meth:`TensorTwoViewAugment.photometric`) on ``--device`` (CUDA when there is one; compiled
  there, as the engine does), ``--calls`` calls per round;
- ``split loader``: the engine's own loader (:class:`vssl.train.loader.TrainBatches`, split
  mode, compiled on CUDA) with ``--workers`` workers feeding ``--device``, end to end, epochs of
  ``--loader-images`` (the folder's files in turn) after one warm-up epoch; each epoch starts
  its workers afresh, as the engine's do.

Rounds interleave the per-core measurements; each row reports the median images/s (two views
per image) and the ratio to ``per_sample`` within a round. Synthetic JPEGs (a colour, a ramp and
noise, quality 90) decode faster than photos of the same size; pass ``--root`` for real ones.

    python benchmarks/folder_augment.py --images 96 --rounds 3 --workers 2 --out OUT.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_fake_folder(root: Path, n: int, height: int, width: int, seed: int = 0) -> None:
    """``n`` synthetic JPEGs under ``root/imagenet100/train/<wnid>/`` (round-robin over the
    100 classes) and one per class under ``val``: 64 distinct images encoded once, their bytes
    written in turn (decoding costs the same; writing thousands stays fast)."""
    import io

    from PIL import Image

    from vssl.data.registry import imagenet100_classes

    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(min(n, 64)):
        base = rng.uniform(20, 230, (1, 1, 3))
        ramp = np.linspace(-40, 40, width)[None, :, None]
        img = np.clip(base + ramp + rng.normal(0, 12, (height, width, 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    wnids = imagenet100_classes()
    for split, count in (("train", n), ("val", len(wnids))):
        for k in range(count):
            d = root / "imagenet100" / split / wnids[k % len(wnids)]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{k}.JPEG").write_bytes(encoded[k % len(encoded)])


def _rate(fn, items: int) -> float:
    t0 = time.perf_counter()
    fn()
    return items / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    from vssl.augment import TensorTwoViewAugment, TwoViewCrops, TwoViewTransform, get_preset
    from vssl.config import load_params
    from vssl.data import build_dataset
    from vssl.train.loader import TrainBatches

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="data root holding imagenet100/train (default: synthetic)")
    p.add_argument("--images", type=int, default=96, help="images timed per core and round")
    p.add_argument("--size", default="375x500", help="synthetic JPEG size HxW")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=256, help="batch of the device and loader rows")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--loader-images", type=int, default=1024, help="images per loader epoch")
    p.add_argument("--calls", type=int, default=3, help="device calls per round")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(1)  # per-core rows; the device row on CPU is one core too
    recipe = get_preset("imagenet")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        if not args.root:
            h, w = (int(v) for v in args.size.split("x"))
            write_fake_folder(root, max(args.images, 512), h, w)
        os.environ["VSSL_DATA_ROOT"] = str(root)
        params = load_params(ROOT / "params.yaml", profile="paper")
        ds = build_dataset("imagenet100", "train", params)
        idx = list(range(min(args.images, len(ds))))
        n = len(idx)
        full, crops = TwoViewTransform(recipe, MEAN, STD), TwoViewCrops(recipe)
        compiled = device.type == "cuda"  # the engine compiles the augmentation on CUDA
        aug = TensorTwoViewAugment(recipe, MEAN, STD).to(device)
        if compiled:
            aug.compile_ops()
        cropped = [crops(ds[i][0]) for i in idx[: min(n, args.batch)]]
        c1 = torch.stack([a for a, _ in cropped])
        c2 = torch.stack([b for _, b in cropped])
        cycle = torch.arange(args.batch) % len(cropped)  # a full batch from the crops at hand
        c1, c2 = c1[cycle].to(device), c2[cycle].to(device)
        for _ in range(2):  # warm-up (and compile)
            aug.photometric(c1, c2)
        _sync(device)

        def device_calls() -> None:
            for _ in range(args.calls):
                aug.photometric(c1, c2)
            _sync(device)

        rows: dict[str, list[float]] = {k: [] for k in ("decode", "per_sample", "split workers")}
        rows["split device"] = []
        for _ in range(args.rounds):
            rows["decode"].append(_rate(lambda: [ds[i] for i in idx], n))
            rows["per_sample"].append(_rate(lambda: [full(ds[i][0]) for i in idx], n))
            rows["split workers"].append(_rate(lambda: [crops(ds[i][0]) for i in idx], n))
            rows["split device"].append(_rate(device_calls, args.calls * c1.shape[0]))

        # The engine's loader, split mode, end to end (workers decode + crop, device finishes).
        sub = torch.utils.data.Subset(ds, [i % len(ds) for i in range(args.loader_images)])
        batches = TrainBatches(
            {"dataset": sub},
            recipe,
            MEAN,
            STD,
            gpu_augment=True,
            device=device,
            seed=0,
            global_batch=args.batch,
            accum=1,
            world=1,
            rank=0,
            num_workers=args.workers,
            channels_last=True,
            compile_augment=compiled,
        )
        loader_rates = []
        for epoch in range(1 + args.rounds):
            t0 = time.perf_counter()
            seen = 0
            for x1, _x2, _y in batches.epoch(epoch):
                seen += x1.shape[0]
            _sync(device)
            if epoch:  # the first epoch warms up (caches, compiles)
                loader_rates.append(seen / (time.perf_counter() - t0))

    base = rows["per_sample"]
    table = []
    for name, rates in rows.items():
        ratio = statistics.median(r / b for r, b in zip(rates, base, strict=True))
        where = "1 core"
        if name == "split device":
            where = f"{device.type}, batch {c1.shape[0]}" + (", compiled" if compiled else "")
        table.append({"path": name, "where": where, "img_s": statistics.median(rates),
                      "min": min(rates), "max": max(rates), "ratio_to_per_sample": ratio})  # fmt: skip
    table.append({"path": "split loader", "where": f"{args.workers} workers -> {device.type}",
                  "img_s": statistics.median(loader_rates), "min": min(loader_rates),
                  "max": max(loader_rates), "ratio_to_per_sample": None})  # fmt: skip
    print("| path | where | images/s (median) | min | max | / per_sample (same round) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in table:
        ratio = "" if r["ratio_to_per_sample"] is None else f"{r['ratio_to_per_sample']:.2f}"
        print(f"| {r['path']} | {r['where']} | {r['img_s']:.1f} | {r['min']:.1f} | "
              f"{r['max']:.1f} | {ratio} |")  # fmt: skip
    if args.out:
        from vssl.io import write_json

        meta = {"images": n, "rounds": args.rounds, "size": args.size, "root": args.root,
                "batch": args.batch, "workers": args.workers, "device": str(device),
                "torch": torch.__version__, "cpu_count": os.cpu_count()}  # fmt: skip
        write_json(Path(args.out), {"meta": meta, "rows": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
