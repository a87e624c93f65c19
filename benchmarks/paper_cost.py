"""What reproducing the paper's grid costs: FLOPs per training image, images, and GPU hours.

For each method it counts the FLOPs of one real training step (student forward and backward on
both views, teacher forward on both views, loss) with ``torch.utils.flop_counter`` on the CPU,
divides by the batch size, multiplies by the images the `paper` profile processes (dataset size
x epochs x seeds), and converts to hours for an accelerator given its dense bf16 peak and an
assumed model-FLOPs utilisation (MFU). The MFU is an assumption, not a measurement: pass
``--measured-ips`` (images per second you measured with benchmarks/throughput.py on your GPU)
to replace it with your own number.

    python benchmarks/paper_cost.py
    python benchmarks/paper_cost.py --mfu 0.25 --gpu "H100 SXM" --peak-tflops 989
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vssl.config import load_params
from vssl.methods import build
from vssl.models import build_backbone

ROOT = Path(__file__).resolve().parents[1]
# Train-split sizes of the paper's datasets.
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet100": 126_689}
IMAGE_SIZE = {"cifar10": 32, "cifar100": 32, "imagenet100": 224}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet100": 100}


def flops_per_image(method: str, image_size: int, params, batch: int = 8) -> float:
    """FLOPs of one training step per image (both views, student + teacher, fwd + bwd)."""
    torch.manual_seed(0)
    backbone, dim = build_backbone(
        params.backbone.name, width=params.backbone.width, in_channels=3, image_size=image_size
    )
    model = build(method, params.method_cfg(method), backbone, dim)
    x1 = torch.randn(batch, 3, image_size, image_size)
    x2 = torch.randn(batch, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with counter:
        model.training_step(x1, x2)["loss"].backward()
    return counter.get_total_flops() / batch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--gpu", default="H100 SXM")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak, TFLOP/s")
    p.add_argument(
        "--mfu",
        type=float,
        nargs="+",
        default=[0.05, 0.2],
        help="assumed model-FLOPs utilisations (small ResNets at 32 px reach little)",
    )
    p.add_argument(
        "--measured-ips",
        type=float,
        default=None,
        help="measured images/s on your GPU (CIFAR size); overrides the MFU model",
    )
    args = p.parse_args(argv)
    params = load_params(args.params, profile="paper")
    grid = params.grid
    print(
        f"paper profile: {grid.datasets} x {grid.methods} x seeds {grid.seeds}; "
        f"{params.backbone.name} width {params.backbone.width}; "
        f"{args.gpu} at {args.peak_tflops:.0f} TFLOP/s"
    )
    cols = ["GPU h, measured"] if args.measured_ips else [f"GPU h @ MFU {u:.0%}" for u in args.mfu]
    print(
        "| dataset | method | epochs | GFLOPs/image | images (all seeds) | "
        + " | ".join(cols)
        + " |"
    )
    print("|---|---|---:|---:|---:|" + "---:|" * len(cols))
    total = [0.0] * len(cols)
    cache: dict[tuple[str, int], float] = {}
    for ds in grid.datasets:
        size = IMAGE_SIZE[ds]
        epochs = params.epochs_for(ds)
        for m in grid.methods:
            key = (m, size)
            if key not in cache:
                cache[key] = flops_per_image(m, size, params)
            f = cache[key]
            images = TRAIN_IMAGES[ds] * epochs * len(grid.seeds)
            if args.measured_ips:
                # measured at 32 px; scale by FLOPs for other sizes
                ips = args.measured_ips * cache.get((m, 32), f) / f
                hours = [images / ips / 3600]
            else:
                hours = [images * f / (args.peak_tflops * 1e12 * u) / 3600 for u in args.mfu]
            total = [t + h for t, h in zip(total, hours, strict=True)]
            cells = " | ".join(f"{h:,.1f}" for h in hours)
            print(f"| {ds} | {m} | {epochs} | {f / 1e9:.2f} | {images:,} | {cells} |")
    cells = " | ".join(f"{t:,.0f}" for t in total)
    print(f"| **total** | | | | | {cells} |")
    print(f"\n(command: python benchmarks/paper_cost.py {' '.join(sys.argv[1:])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
