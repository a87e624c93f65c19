"""Images per second of the pretraining engine's step: VSSL vs BYOL, interleaved in one run.

A step is exactly what ``vssl pretrain`` does per iteration with batched augmentation: draw a
batch of uint8 cifar10-mini images, ``TensorTwoViewAugment`` (here on CPU), forward of student,
teacher and online probe (``TrainModule``), backward, LARS + probe SGD steps
(``vssl.train.engine.train_step``), scheduler step and EMA update. Images per second =
batch / step time (each image gives two views).

Each (method, width) runs one untimed warm-up step (a small batch: on a 2-core CPU a width-64 step
at batch 256 takes minutes), then the configurations are interleaved over
``--repeats`` rounds of ``--steps`` timed steps, so machine noise (the CPU is shared) hits all
alike; the VSSL/BYOL ratio is taken within each round and summarised by its median.

    python benchmarks/pretrain_speed.py --repeats 2        # widths 16 and 64, batch 256, 32 px
    python benchmarks/pretrain_speed.py --widths 16 --repeats 2 --out results/speed.json

Method hyperparameters are params.yaml's (``--profile``, default ``paper``: 4096-wide heads).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_config(method: str, width: int, args: argparse.Namespace, accelerator, spec) -> dict:
    from vssl.config import load_params
    from vssl.train.assembly import TrainModule, build_method, data_spec_dict, online_probe
    from vssl.train.optim import build_optimizer, build_scheduler, scaled_lr

    params = load_params(
        args.params,
        profile=args.profile,
        overrides=[f"backbone.width={width}", f"pretrain.batch_size={args.batch}"],
    )
    torch.manual_seed(0)
    m, feature_dim = build_method(method, params, data_spec_dict(spec))
    module = TrainModule(m, online_probe(feature_dim, spec.num_classes))
    oc = params.optimizer_cfg(method)
    opt = build_optimizer(
        oc["optimizer"],
        m,
        lr=scaled_lr(oc["base_lr"], args.batch),
        weight_decay=oc["weight_decay"],
        momentum=oc["momentum"],
        lars_eta=oc["lars_eta"],
    )
    total = 1000
    sched = build_scheduler(opt, 10, total, oc["min_lr"])
    probe_opt = torch.optim.SGD(module.probe.parameters(), lr=0.1, momentum=0.9)
    model, opt, probe_opt = accelerator.prepare(module, opt, probe_opt)
    return {
        "name": f"{method}-w{width}",
        "method": method,
        "width": width,
        "model": model,
        "method_module": m,
        "opts": (opt, probe_opt),
        "sched": sched,
        "step": 0,
        "total": total,
        "times": [],
    }


def run_steps(cfg: dict, n: int, images, labels, augment, accelerator, batch: int) -> float:
    """Seconds per step over ``n`` steps."""
    from vssl.train.engine import train_step

    t0 = time.perf_counter()
    for _ in range(n):
        idx = torch.randint(0, len(images), (batch,))
        x1, x2 = augment(images[idx])
        train_step(accelerator, cfg["model"], cfg["opts"], x1, x2, labels[idx])
        cfg["sched"].step()
        cfg["step"] += 1
        cfg["method_module"].momentum_update(cfg["step"], cfg["total"])
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--dataset", default="cifar10_mini")
    ap.add_argument("--methods", nargs="+", default=["vssl", "byol"])
    ap.add_argument("--widths", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument(
        "--warmup-batch", type=int, default=32, help="batch of the untimed warm-up step"
    )
    ap.add_argument("--steps", type=int, default=1, help="timed steps per config per round")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--out", default=None, help="also write the results here (JSON)")
    args = ap.parse_args(argv)

    from accelerate import Accelerator

    from vssl.augment import TensorTwoViewAugment, get_preset
    from vssl.config import load_params
    from vssl.data import get_spec, load_tensors
    from vssl.io import write_json

    params = load_params(args.params, profile=args.profile)
    spec = get_spec(args.dataset, params)
    images, labels = load_tensors(args.dataset, "train", params)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    images, labels = images.to(acc.device), labels.to(acc.device)
    augment = TensorTwoViewAugment(get_preset(spec.preset), spec.mean, spec.std).to(acc.device)

    configs = [build_config(m, w, args, acc, spec) for w in args.widths for m in args.methods]
    for cfg in configs:  # warm-up (allocator, kernels), untimed
        run_steps(cfg, 1, images, labels, augment, acc, args.warmup_batch)
    for r in range(args.repeats):
        # alternate the order so neither method always runs right after the other
        for cfg in configs if r % 2 == 0 else reversed(configs):
            sec = run_steps(cfg, args.steps, images, labels, augment, acc, args.batch)
            cfg["times"].append(sec)
            print(f"round {r + 1} {cfg['name']}: {args.batch / sec:.1f} img/s", file=sys.stderr)

    results: dict = {
        "device": str(acc.device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "image_size": spec.image_size,
        "dataset": args.dataset,
        "profile": args.profile,
        "steps_per_round": args.steps,
        "rounds": args.repeats,
        "configs": {},
        "ratios": {},
    }
    for cfg in configs:
        ips = [args.batch / t for t in cfg["times"]]
        results["configs"][cfg["name"]] = {
            "images_per_second_median": statistics.median(ips),
            "images_per_second": ips,
        }
    if {"vssl", "byol"} <= set(args.methods):
        by = {(c["method"], c["width"]): c["times"] for c in configs}
        for w in args.widths:
            # per round: (VSSL img/s) / (BYOL img/s) = BYOL time / VSSL time
            per_round = [b / v for v, b in zip(by[("vssl", w)], by[("byol", w)], strict=True)]
            results["ratios"][f"vssl_over_byol_w{w}"] = {
                "median": statistics.median(per_round),
                "per_round": per_round,
            }
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
