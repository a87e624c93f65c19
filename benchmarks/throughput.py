"""Pretraining throughput: VSSL vs our BYOL vs lightly's BYOL, interleaved in one process.

One *step* of ours is the engine's own: the batched augmentation module ``vssl pretrain``
uses (:class:`vssl.augment.TensorTwoViewAugment`), then :func:`vssl.train.engine.train_step`
(forward of both views through student, teacher and the online probe, the non-finite check
queued on the device, backward, the method's gradient norm and its clipping where params.yaml
sets one (VSSL: norm 1.0; since 2026-11-27, after the H100 table; the norm of every method's
gradients since 2026-11-29), LARS + probe SGD steps), the
scheduler step and the EMA update
(``Method.momentum_update``), on Accelerate with the engine's mixed precision. lightly's BYOL
uses lightly's BYOLProjectionHead, BYOLPredictionHead, NegativeCosineSimilarity and
update_momentum around the same backbone, batch, input, augmentation and LARS (no online probe).
Images per second = batch size / step time (each image yields two views).

Every (method, width, augmentation) configuration runs `--steps` timed steps after `--warmup`
untimed ones, with no host sync inside the timed loop (the device runs ahead as in training);
the configurations are *interleaved* over `--repeats` rounds so that machine noise hits all of
them alike; ratios are computed within each round, then summarised (median, min, max). The
augmentation's share of the step is timed separately (the same number of batches alone). Where
``nvidia-smi`` exists, a background thread samples ``utilization.gpu`` during the timed steps
(the percentage of time a kernel was running): a host-bound step shows up as a low figure.

    python benchmarks/throughput.py                       # widths 16 and 64, batch 256, 32 px
    python benchmarks/throughput.py --widths 16 --repeats 2 --steps 2   # a quick look
    python benchmarks/throughput.py --batch-sizes 256 512 --augs none batched   # GPU table
    python benchmarks/throughput.py plot fig.png a.json b.json          # one figure of saved runs

Augmentation modes: ``none`` (views made once: model work only), ``cpu`` (per-sample
torchvision v2, what DataLoader workers do), ``batched`` (the engine's plain-tensor batched
augmentation on the whole batch on the device: its default for in-memory data) and ``kornia``
(the kornia implementation of the same recipe) and ``shipped`` (each library's data path as its
users run it: ours is the engine's batched augmentation, as in ``batched``; lightly's is
lightly's own ``BYOLTransform`` with its CIFAR-10 settings, applied per PIL image in a
``torch.utils.data.DataLoader`` with ``--loader-workers`` workers, as lightly's BYOL example
does). ``shipped`` is the comparison a user of either library gets; ``none`` and ``batched``
compare the models on the same input. On a GPU, bf16 autocast and channels-last are on by
default; ``--compile`` compiles the models (``pretrain.compile``).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vssl.augment import (  # noqa: E402
    GPUTwoViewAugment,
    TensorTwoViewAugment,
    TwoViewTransform,
    get_preset,
)
from vssl.methods import build  # noqa: E402
from vssl.models import build_backbone  # noqa: E402
from vssl.train.optim import build_optimizer, build_scheduler  # noqa: E402

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
HEADS = {"proj_hidden_dim": 4096, "pred_hidden_dim": 4096}  # solo-learn's CIFAR defaults
TOTAL_STEPS = 1000  # the schedule (warm-up + cosine) and tau schedule the steps walk along


def load_images(data_root: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n real CIFAR-10 images, uint8 (n, 3, 32, 32), and labels, from cifar10-mini."""
    data = np.load(data_root / "cifar10-mini" / "train.npz")
    arr, labels = data["images"][:n], data["labels"][:n]
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(labels.astype(np.int64))


class PilPairs(torch.utils.data.Dataset):
    """(view 1, view 2, label) of each image through a two-view PIL transform (lightly's)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        from PIL import Image

        self.pil = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
        self.labels, self.transform = labels, transform

    def __len__(self) -> int:
        return len(self.pil)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v1, v2 = self.transform(self.pil[i])
        return v1, v2, self.labels[i]


def lightly_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    """lightly's BYOL data path at 32 px: ``BYOLTransform`` with no blur (lightly's CIFAR-10
    setting; the same recipe as our ``cifar`` preset: crop scale (0.08, 1), flip 0.5, jitter
    0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2, solarisation 0 / 0.2), CIFAR normalisation,
    shuffled, in a DataLoader."""
    from lightly.transforms.byol_transform import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
    )

    norm = {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    transform = BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0, normalize=norm),
        view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0, normalize=norm),
    )
    return torch.utils.data.DataLoader(
        PilPairs(images, labels, transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin,
    )


def forever(loader: torch.utils.data.DataLoader) -> Iterator:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


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


def make_model(method: str, width: int) -> tuple[nn.Module, int]:
    """(model, feature_dim): our method (``vssl``, ``byol-ours``) or lightly's BYOL."""
    torch.manual_seed(0)
    backbone, dim = build_backbone("resnet18", width=width, in_channels=3, image_size=32)
    if method == "byol-lightly":
        return LightlyBYOL(backbone, dim), dim
    name = method.removesuffix("-ours")
    cfg = dict(HEADS)
    cfg["latent_dim" if name == "vssl" else "proj_output_dim"] = 256
    return build(name, cfg, backbone, dim), dim


def engine_clip(method: str) -> float:
    """The max gradient norm the engine clips ``method`` to (params.yaml, resolved as the
    engine resolves it: ``Params.optimizer_cfg``; VSSL: 1.0, BYOL: ``inf``, measured only)."""
    from vssl.config import load_params
    from vssl.train.assembly import clip_max_norm

    params = load_params(ROOT / "params.yaml")
    return clip_max_norm(params.optimizer_cfg(method.removesuffix("-ours")))


class GpuUtilisation:
    """Samples ``nvidia-smi --query-gpu=utilization.gpu`` in a background thread while
    entered; ``samples`` holds the percentages (the busiest GPU of each sample). Inert where
    ``nvidia-smi`` does not exist."""

    def __init__(self, period_s: float = 0.1) -> None:
        self.exe = shutil.which("nvidia-smi")
        self.period_s = period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        cmd = [self.exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
                values = [float(v) for v in out.split() if v.strip().replace(".", "").isdigit()]
                if values:
                    self.samples.append(max(values))
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            self._stop.wait(self.period_s)

    def __enter__(self) -> GpuUtilisation:
        if self.exe:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


class Runner:
    """One configuration: model + optimisers + a way to make a batch of two views."""

    def __init__(
        self,
        method: str,
        width: int,
        batch_size: int,
        aug: str,
        args: argparse.Namespace,
        images: torch.Tensor,
        labels: torch.Tensor,
        accelerator,
    ) -> None:
        from vssl.train.assembly import TrainModule, compile_train_module, online_probe
        from vssl.train.guards import NonFiniteWatch

        self.method, self.width, self.batch_size, self.aug = method, width, batch_size, aug
        self.acc, self.args = accelerator, args
        self.device = device = accelerator.device
        self.ours = method != "byol-lightly"
        model, dim = make_model(method, width)
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        # The same optimiser (LARS) for all three, so the comparison is about the methods.
        opt = build_optimizer("lars", model, lr=0.1, weight_decay=1e-5)
        self.sched = build_scheduler(opt, 10, TOTAL_STEPS)
        if self.ours:  # the engine's training module: the method plus the online probe
            module = TrainModule(model, online_probe(dim, 10)).to(memory_format=fmt)
            if args.compile:
                compile_train_module(module)
            probe_opt = torch.optim.SGD(module.probe.parameters(), lr=0.1, momentum=0.9)
            self.model, self.opt, self.probe_opt = accelerator.prepare(module, opt, probe_opt)
            self.net = model
            self.watch = NonFiniteWatch(device)
            max_norm = engine_clip(method)  # as vssl.train.assembly.grad_clip gives the engine
            params = [p for p in model.parameters() if p.requires_grad]
            self.clip = (params, max_norm)
        else:
            self.net = self.model = model.to(device, memory_format=fmt)
            self.opt = opt
            if args.compile:
                self.model.training_step = torch.compile(self.model.training_step)
        self.step_no = 0
        self.images, self.labels = images, labels
        recipe = get_preset("cifar")
        self.cpu_aug = TwoViewTransform(recipe, CIFAR_MEAN, CIFAR_STD)
        self.engine_aug = TensorTwoViewAugment(
            recipe, CIFAR_MEAN, CIFAR_STD, channels_last=args.channels_last
        ).to(device)
        self.kornia_aug = GPUTwoViewAugment(recipe, CIFAR_MEAN, CIFAR_STD).to(device)
        self.dev_images, self.dev_labels = images.to(device), labels.to(device)
        # "none": views augmented once up front, so only the model's work is timed.
        self.fixed = (*self.engine_aug(self.dev_images[:batch_size]), self.dev_labels[:batch_size])
        self.shipped = None
        if aug == "shipped" and not self.ours:  # lightly's own transforms and DataLoader
            loader = lightly_loader(
                images, labels, batch_size, args.loader_workers, device.type == "cuda"
            )
            self.shipped = forever(loader)

    def host_views(
        self, v1: torch.Tensor, v2: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views made on the host (a DataLoader's batch) in the runner's layout, on its device."""
        if self.args.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        return tuple(t.to(self.device, non_blocking=True) for t in (v1, v2, y))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.batch_size
        if self.aug == "none":
            return self.fixed
        if self.shipped is not None:
            return self.host_views(*next(self.shipped))
        if self.aug == "cpu":
            idx = torch.randint(0, len(self.images), (b,))
            views = [self.cpu_aug(self.images[i]) for i in idx.tolist()]
            v1, v2 = (torch.stack([v[k] for v in views]) for k in (0, 1))
            return self.host_views(v1, v2, self.labels[idx])
        idx = torch.randint(0, len(self.dev_images), (b,), device=self.device)
        if self.aug == "kornia":
            v1, v2 = self.kornia_aug(self.dev_images[idx])
            if self.args.channels_last:
                v1 = v1.contiguous(memory_format=torch.channels_last)
                v2 = v2.contiguous(memory_format=torch.channels_last)
            return v1, v2, self.dev_labels[idx]
        return (*self.engine_aug(self.dev_images[idx]), self.dev_labels[idx])

    def step(self) -> None:
        from vssl.train.engine import train_step

        x1, x2, y = self.batch()
        self.step_no += 1
        if self.ours:
            train_step(
                self.acc,
                self.model,
                (self.opt, self.probe_opt),
                x1,
                x2,
                y,
                check=lambda loss, s=self.step_no: self.watch.observe(loss, s),
                clip=self.clip,
            )
        else:
            amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16)
            with amp:
                loss = self.model.training_step(x1, x2)["loss"]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.sched.step()
        self.net.momentum_update(self.step_no, TOTAL_STEPS)

    def measure(self, warmup: int, steps: int, util: GpuUtilisation) -> tuple[float, float]:
        """(images per second, augmentation share of the step time) over ``steps`` timed
        steps; the augmentation alone is timed over as many batches right after."""
        for _ in range(warmup):
            self.step()
        sync(self.device)
        with util:
            t0 = time.perf_counter()
            for _ in range(steps):
                self.step()
            sync(self.device)
            dt = time.perf_counter() - t0
        data = 0.0
        if self.aug != "none":
            t0 = time.perf_counter()
            for _ in range(steps):
                self.batch()
            sync(self.device)
            data = time.perf_counter() - t0
        return steps * self.batch_size / dt, min(1.0, data / dt)


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
    from accelerate import Accelerator

    device = torch.device(args.device)
    torch.set_flush_denormal(True)  # as the engine does: denormals slow CPU kernels ~3x
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine does
    acc = Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if args.bf16 else "no")
    torch.manual_seed(0)
    images, labels = load_images(Path(args.data_root), args.n_images)
    augs = args.augs or ["none", "cpu", "batched"]
    configs = [
        (m, w, b, a)
        for w in args.widths
        for b in args.batch_sizes
        for a in augs
        for m in args.methods
    ]
    runners = {c: Runner(*c, args, images, labels, acc) for c in configs}
    ips: dict[tuple, list[float]] = {c: [] for c in configs}
    share: dict[tuple, list[float]] = {c: [] for c in configs}
    util: dict[tuple, GpuUtilisation] = {c: GpuUtilisation() for c in configs}
    for r in range(args.repeats):
        for c in configs:  # interleaved: every config once per round
            v, s = runners[c].measure(args.warmup if r == 0 else 1, args.steps, util[c])
            ips[c].append(v)
            share[c].append(s)
            u = util[c].mean()
            print(
                f"round {r} {c[0]:>13} width {c[1]:>3} batch {c[2]:>4} aug {c[3]:>7}: "
                f"{v:8.1f} img/s (augmentation {100 * s:4.1f}% of a step"
                + (f", GPU busy {u:.0f}%" if u is not None else "")
                + ")",
                flush=True,
            )
    rows = []
    for c in configs:
        rows.append(
            {
                "method": c[0],
                "width": c[1],
                "batch_size": c[2],
                "aug": c[3],
                "images_per_s": summarise(ips[c]),
                "data_share": summarise(share[c]),
                "gpu_util_percent": util[c].mean(),
            }
        )
    ratios = []
    pairs = [
        ("vssl/byol-ours", "vssl", "byol-ours"),
        ("byol-ours/byol-lightly", "byol-ours", "byol-lightly"),
        ("vssl/byol-lightly", "vssl", "byol-lightly"),
    ]
    for w in args.widths:
        for b in args.batch_sizes:
            for a in augs:
                for label, num, den in pairs:
                    if (num, w, b, a) in ips and (den, w, b, a) in ips:
                        per_round = [
                            x / y
                            for x, y in zip(ips[(num, w, b, a)], ips[(den, w, b, a)], strict=True)
                        ]
                        ratios.append(
                            {"ratio": label, "width": w, "batch_size": b, "aug": a}
                            | summarise(per_round)
                        )
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "batch_size": args.batch_sizes[0] if len(args.batch_sizes) == 1 else args.batch_sizes,
        "image_size": 32,
        "backbone": "resnet18",
        "bf16": bool(args.bf16),
        "channels_last": args.channels_last,
        "compile": args.compile,
        "loader_workers": args.loader_workers,
        "steps": args.steps,
        "repeats": args.repeats,
        "rows": rows,
        "ratios": ratios,
    }


def markdown(res: dict) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}%"

    out = [
        f"Throughput on {res['device']} ({res['date']}), torch {res['torch']}, "
        f"batch {res['batch_size']}, {res['image_size']} px, bf16={res['bf16']}, "
        f"channels_last={res['channels_last']}, compile={res.get('compile', False)}; "
        f"{res['repeats']} interleaved rounds of {res['steps']} steps"
        + (
            f"; lightly's `shipped` data path with {res['loader_workers']} DataLoader workers"
            if any(r["aug"] == "shipped" for r in res["rows"])
            else ""
        )
        + f". Command: `{res['command']}`",
        "",
        "| method | width | batch | augmentation | images/s (median) | min-max "
        "| augmentation share | GPU busy |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        i, s = r["images_per_s"], r["data_share"]
        out.append(
            f"| {r['method']} | {r['width']} | {r.get('batch_size', res['batch_size'])} | "
            f"{r['aug']} | {i['median']:.1f} | {i['min']:.1f}-{i['max']:.1f} | "
            f"{100 * s['median']:.0f}% | {pct(r.get('gpu_util_percent'))} |"
        )
    out += [
        "",
        "| ratio | width | batch | augmentation | median | min-max |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in res["ratios"]:
        out.append(
            f"| {r['ratio']} | {r['width']} | {r.get('batch_size', res['batch_size'])} | "
            f"{r['aug']} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} |"
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
            "panel": f"{res['device']}, width {r['width']}"
            + (f", batch {r['batch_size']}" if "batch_size" in r else ""),
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
        choices=["none", "cpu", "batched", "kornia", "shipped"],
        default=None,
        help="none: views made once, model work only; cpu: per-sample torchvision v2; "
        "batched: the engine's batched augmentation (plain tensor ops) on the whole batch on "
        "the device (its default for in-memory data); kornia: the same recipe with kornia; "
        "shipped: each library's own data path (ours: batched; lightly's: its BYOLTransform "
        "in a DataLoader) (default: none cpu batched)",
    )
    p.add_argument(
        "--loader-workers",
        type=int,
        default=None,
        help="DataLoader workers of lightly's data path in --augs shipped (default: 0 on a "
        "CPU, whose cores the model needs; min(8, cores) on a GPU)",
    )
    p.add_argument("--batch-sizes", "--batch-size", dest="batch_sizes", type=int, nargs="+",
                   default=[256])  # fmt: skip
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
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the models (pretrain.compile)"
    )
    p.add_argument(
        "--data-root",
        default=os.environ.get("VSSL_DATA_ROOT", str(ROOT.parent / "shared" / "data")),
        help="holds cifar10-mini/train.npz (default: $VSSL_DATA_ROOT, else ../shared/data)",
    )
    p.add_argument("--out", default=None, help="JSON results path (a .md table is written beside)")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.bf16 = gpu if args.bf16 is None else args.bf16
    args.channels_last = gpu if args.channels_last is None else args.channels_last
    if args.loader_workers is None:
        args.loader_workers = min(8, os.cpu_count() or 1) if gpu else 0
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
