"""Batched two-view augmentation alone: the plain-tensor module vs kornia, interleaved.

Images per second of ``module(x_uint8)`` (both views) for a batch of real cifar10-mini images
(or random ones for other presets), each implementation once per round; ratios to kornia are
taken within a round and summarised by their median.

    python benchmarks/augment_speed.py --preset cifar --batch 256 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from vssl.augment import GPUTwoViewAugment, TensorTwoViewAugment, get_preset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cifar")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=3, help="calls per implementation and round")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--data-root", default=os.environ.get("VSSL_DATA_ROOT", str(ROOT.parent / "shared/data"))
    )
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    r = get_preset(args.preset)
    mean, std = (0.5,) * r.channels, (0.25,) * r.channels
    npz = Path(args.data_root) / "cifar10-mini" / "train.npz"
    if args.preset == "cifar" and npz.exists():
        arr = np.load(npz)["images"][: args.batch]
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    else:
        x = torch.randint(0, 256, (args.batch, r.channels, r.size, r.size), dtype=torch.uint8)
    x = x.to(device)
    impls = {
        "kornia": GPUTwoViewAugment(r, mean, std).to(device),
        "tensor": TensorTwoViewAugment(r, mean, std, channels_last=False).to(device),
        "tensor (channels_last)": TensorTwoViewAugment(r, mean, std).to(device),
    }
    ips: dict[str, list[float]] = {k: [] for k in impls}
    for aug in impls.values():  # warm-up
        aug(x)
    for _ in range(args.rounds):
        for name, aug in impls.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.calls):
                aug(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            ips[name].append(args.calls * args.batch / (time.perf_counter() - t0))
    print(f"{args.preset}, batch {args.batch}, {device}, {torch.get_num_threads()} threads")
    print("| implementation | images/s (median) | / kornia (median, min-max) |")
    print("|---|---:|---:|")
    for name in impls:
        ratio = [a / b for a, b in zip(ips[name], ips["kornia"], strict=True)]
        print(
            f"| {name} | {statistics.median(ips[name]):.0f} | {statistics.median(ratio):.2f} "
            f"({min(ratio):.2f}-{max(ratio):.2f}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
