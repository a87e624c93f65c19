"""Pretraining throughput: VSSL vs our BYOL vs lightly's BYOL, interleaved in one process.

One *step* is what a pretraining iteration does: (optionally) augment a batch into two views,
forward both views through student and teacher, backward, optimiser step, EMA update.
Images per second = batch size / step time (each image yields two views).

Every (method, width, augmentation) configuration runs `--steps` timed steps after `--warmup`
untimed ones, and the configurations are *interleaved* over `--repeats` rounds so that machine
noise hits all of them alike; ratios are computed within each round, then summarised (median,
min, max). lightly's BYOL uses lightly's own BYOLProjectionHead, BYOLPredictionHead,
NegativeCosineSimilarity and update_momentum around the same backbone, batch and input size.

    python benchmarks/throughput.py                       # widths 16 and 64, batch 256, 32 px
    python benchmarks/throughput.py --widths 16 --repeats 2 --steps 2   # a quick look
    python benchmarks/throughput.py plot fig.png a.json b.json          # one figure of saved runs

Augmentation modes: ``none`` (views made once: model work only), ``cpu`` (per-sample
torchvision v2, what DataLoader workers do) and ``batched`` (kornia on the whole batch on the
device: the engine's default for in-memory data). The data pipeline's share of the step time is
reported for each. On a GPU, bf16 autocast and channels-last are on by default.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from vssl.augment import GPUTwoViewAugment, TwoViewTransform, get_preset
from vssl.methods import build
from vssl.models import build_backbone
from vssl.train.optim import build_optimizer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
HEADS = {"proj_hidden_dim": 4096, "pred_hidden_dim": 4096}  # solo-learn's CIFAR defaults


def load_images(data_root: Path, n: int) -> torch.Tensor:
    """n real CIFAR-10 images, uint8 (n, 3, 32, 32), from cifar10-mini."""
    arr = np.load(data_root / "cifar10-mini" / "train.npz")["images"][:n]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


class LightlyBYOL(nn.Module):
    """BYOL from lightly's building blocks (lightly's BYOL example), same backbone as ours."""

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(feature_dim, HEADS["proj_hidden_dim"], 256)
        self.prediction_head = BYOLPredictionHead(256, HEADS["pred_hidden_dim"], 256)
        self.backbone_momentum = copy.deepcopy(backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def training_step(self, x0: torch.Tensor, x1: torch.Tensor) -> dict[str, torch.Tensor]:
        p0 = self.prediction_head(self.projection_head(self.backbone(x0)))
        p1 = self.prediction_head(self.projection_head(self.backbone(x1)))
        with torch.no_grad():
            z0 = self.projection_head_momentum(self.backbone_momentum(x0))
            z1 = self.projection_head_momentum(self.backbone_momentum(x1))
        return {"loss": 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))}

    def momentum_update(self, step: int, total_steps: int) -> float:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        tau = cosine_schedule(step, total_steps, 0.99, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m=tau)
        update_momentum(self.projection_head, self.projection_head_momentum, m=tau)
        return tau


def make_model(method: str, width: int, device: torch.device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    backbone, dim = build_backbone("resnet18", width=width, in_channels=3, image_size=32)
    if method == "byol-lightly":
        model: nn.Module = LightlyBYOL(backbone, dim)
    else:
        name = method.removesuffix("-ours")
        cfg = dict(HEADS)
        cfg["latent_dim" if name == "vssl" else "proj_output_dim"] = 256
        model = build(name, cfg, backbone, dim)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


class Runner:
    """One configuration: model + optimiser + a way to make a batch of two views."""

    def __init__(
        self,
        method: str,
        width: int,
        aug: str,
        args: argparse.Namespace,
        images: torch.Tensor,
        device: torch.device,
    ) -> None:
        self.method, self.width, self.aug = method, width, aug
        self.device, self.args = device, args
        self.model = make_model(method, width, device, args.channels_last)
        # The same optimiser for all three, so the comparison is about the methods.
        self.opt = build_optimizer("lars", self.model, lr=0.1, weight_decay=1e-5)
        self.step_no = 0
        self.images = images
        recipe = get_preset("cifar")
        self.cpu_aug = TwoViewTransform(recipe, CIFAR_MEAN, CIFAR_STD)
        self.gpu_aug = GPUTwoViewAugment(recipe, CIFAR_MEAN, CIFAR_STD).to(device)
        self.gpu_images = images.to(device)
        # "none": views augmented once up front, so only the model's work is timed.
        v1, v2 = self.gpu_aug(self.gpu_images[: args.batch_size])
        self.fixed = (v1, v2)
        self.data_time = 0.0

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.args.batch_size
        idx = torch.randint(0, len(self.images), (b,))
        if self.aug == "none":
            return self.fixed
        if self.aug == "cpu":
            views = [self.cpu_aug(self.images[i]) for i in idx.tolist()]
            v1 = torch.stack([v[0] for v in views]).to(self.device, non_blocking=True)
            v2 = torch.stack([v[1] for v in views]).to(self.device, non_blocking=True)
            return v1, v2
        return self.gpu_aug(self.gpu_images[idx.to(self.device)])

    def step(self) -> None:
        sync(self.device)
        t0 = time.perf_counter()
        x1, x2 = self.batch()
        if self.args.channels_last:
            x1 = x1.contiguous(memory_format=torch.channels_last)
            x2 = x2.contiguous(memory_format=torch.channels_last)
        sync(self.device)
        self.data_time += time.perf_counter() - t0
        amp = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.args.bf16 and self.device.type == "cuda"
            else nullcontext()
        )
        with amp:
            loss = self.model.training_step(x1, x2)["loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.momentum_update(self.step_no, 1000)
        self.step_no += 1

    def measure(self, warmup: int, steps: int) -> tuple[float, float]:
        """(images per second, data share of the step time) over `steps` timed steps."""
        for _ in range(warmup):
            self.step()
        self.data_time = 0.0
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        dt = time.perf_counter() - t0
        return steps * self.args.batch_size / dt, self.data_time / dt


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.set_flush_denormal(True)  # as the engine does: denormals slow CPU kernels ~3x
    torch.manual_seed(0)
    images = load_images(Path(args.data_root), args.n_images)
    augs = args.augs or ["none", "cpu", "batched"]
    configs = [(m, w, a) for w in args.widths for a in augs for m in args.methods]
    runners = {c: Runner(*c, args, images, device) for c in configs}
    ips: dict[tuple, list[float]] = {c: [] for c in configs}
    share: dict[tuple, list[float]] = {c: [] for c in configs}
    for r in range(args.repeats):
        for c in configs:  # interleaved: every config once per round
            v, s = runners[c].measure(args.warmup if r == 0 else 1, args.steps)
            ips[c].append(v)
            share[c].append(s)
            print(
                f"round {r} {c[0]:>13} width {c[1]:>3} aug {c[2]:>4}: {v:8.1f} img/s "
                f"(data {100 * s:4.1f}% of step)",
                flush=True,
            )
    rows = []
    for c in configs:
        rows.append(
            {
                "method": c[0],
                "width": c[1],
                "aug": c[2],
                "images_per_s": summarise(ips[c]),
                "data_share": summarise(share[c]),
            }
        )
    ratios = []
    for w in args.widths:
        for a in augs:
            pairs = [
                ("vssl/byol-ours", "vssl", "byol-ours"),
                ("byol-ours/byol-lightly", "byol-ours", "byol-lightly"),
            ]
            for label, num, den in pairs:
                if (num, w, a) in ips and (den, w, a) in ips:
                    per_round = [
                        x / y for x, y in zip(ips[(num, w, a)], ips[(den, w, a)], strict=True)
                    ]
                    ratios.append({"ratio": label, "width": w, "aug": a, **summarise(per_round)})
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "batch_size": args.batch_size,
        "image_size": 32,
        "backbone": "resnet18",
        "bf16": bool(args.bf16 and device.type == "cuda"),
        "channels_last": args.channels_last,
        "steps": args.steps,
        "repeats": args.repeats,
        "rows": rows,
        "ratios": ratios,
    }


def markdown(res: dict) -> str:
    out = [
        f"Throughput on {res['device']} ({res['date']}), torch {res['torch']}, "
        f"batch {res['batch_size']}, {res['image_size']} px, bf16={res['bf16']}, "
        f"channels_last={res['channels_last']}; {res['repeats']} interleaved rounds of "
        f"{res['steps']} steps. Command: `{res['command']}`",
        "",
        "| method | width | augmentation | images/s (median) | min-max | data share |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in res["rows"]:
        i, s = r["images_per_s"], r["data_share"]
        out.append(
            f"| {r['method']} | {r['width']} | {r['aug']} | {i['median']:.1f} | "
            f"{i['min']:.1f}-{i['max']:.1f} | {100 * s['median']:.0f}% |"
        )
    out += ["", "| ratio | width | augmentation | median | min-max |", "|---|---:|---|---:|---:|"]
    for r in res["ratios"]:
        out.append(
            f"| {r['ratio']} | {r['width']} | {r['aug']} | {r['median']:.3f} | "
            f"{r['min']:.3f}-{r['max']:.3f} |"
        )
    return "\n".join(out) + "\n"


def figure(results: list[dict], path: str | Path) -> Path:
    """Bars of median images/s per method, one hue per augmentation mode, one panel per
    (device, width) of the given result files; error bars span the min-max over rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from vssl.io import atomic_path

    rows = [
        {
            "panel": f"{res['device']}, width {r['width']}",
            "method": r["method"],
            "augmentation": r["aug"],
            "median": r["images_per_s"]["median"],
            "min": r["images_per_s"]["min"],
            "max": r["images_per_s"]["max"],
        }
        for res in results
        for r in res["rows"]
    ]
    df = pd.DataFrame(rows)
    panels = list(dict.fromkeys(df["panel"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        part = df[df["panel"] == panel]
        methods = list(dict.fromkeys(part["method"]))
        augs = list(dict.fromkeys(part["augmentation"]))
        sns.barplot(
            data=part, x="method", y="median", hue="augmentation", order=methods,
            hue_order=augs, ax=ax, errorbar=None,
        )  # fmt: skip
        # One bar container per hue, one bar per x category: draw each bar's own min-max.
        spread = part.set_index(["augmentation", "method"])
        for bars, aug in zip(ax.containers, augs, strict=True):
            for bar, method in zip(bars, methods, strict=True):
                if (aug, method) in spread.index:
                    r = spread.loc[(aug, method)]
                    x = bar.get_x() + bar.get_width() / 2
                    ax.plot([x, x], [r["min"], r["max"]], color="black", lw=1)
        ax.set_title(panel)
        ax.set_xlabel("")
        ax.set_ylabel("images / s (median over rounds)")
    fig.suptitle("Pretraining throughput (bars: median; lines: min-max over rounds)")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["plot"]:
        # python benchmarks/throughput.py plot OUT.png RESULT.json [RESULT.json ...]
        import json

        if len(argv) < 3:
            print("usage: throughput.py plot OUT.png RESULT.json [...]", file=sys.stderr)
            return 2
        print(figure([json.loads(Path(f).read_text()) for f in argv[2:]], argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--methods", nargs="+", default=["vssl", "byol-ours", "byol-lightly"])
    p.add_argument(
        "--augs",
        nargs="+",
        choices=["none", "cpu", "batched"],
        default=None,
        help="none: views made once, model work only; cpu: per-sample torchvision v2; "
        "batched: kornia on the whole batch on the device (the engine's default for "
        "in-memory data)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-images", type=int, default=2048)
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on for GPU)",
    )
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    p.add_argument("--out", default=None, help="JSON results path (a .md table is written beside)")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.bf16 = gpu if args.bf16 is None else args.bf16
    args.channels_last = gpu if args.channels_last is None else args.channels_last
    res = run(args)
    md = markdown(res)
    print(md)
    if args.out:
        from vssl.io import write_json, write_text

        write_json(args.out, res)
        write_text(Path(args.out).with_suffix(".md"), md)
        figure([res], Path(args.out).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
