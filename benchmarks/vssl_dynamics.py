"""Step-by-step training dynamics of VSSL (and BYOL) on cifar10-mini: the evidence behind
docs/method.md, "Why the first reading collapsed".

Each config trains with the model, optimiser (LARS, base lr 1.0, warm-up + cosine), gradient
clipping and batched augmentation that `vssl pretrain` builds from params.yaml (without the
online probe, which sees detached features only), and every ``--every`` steps records the loss
terms, the embedding spread, the mean student and teacher log-variances on a held batch, and
the gradient norm. At the end it scores the backbone by kNN-20 on the 1,000 held-out images and
the teacher's mean variance by the AUROC of kNN-20's errors.

    python benchmarks/vssl_dynamics.py run --out benchmarks/results/vssl-dynamics \
        --steps 300 vssl vssl_2025 byol \
        "head_only:vssl_2025:methods.vssl.head_input=projector" \
        "mean_only:vssl_2025:methods.vssl.reduction=mean" \
        "student_only:vssl_2025:methods.vssl.likelihood_variance=student" \
        "head_mean:vssl:methods.vssl.likelihood_variance=teacher"
    python benchmarks/vssl_dynamics.py plot benchmarks/results/vssl-dynamics

A config is a grid entry of params.yaml (method or variant) or ``NAME:ENTRY:key=value,...``
(the entry plus overrides). Defaults: width 16, the paper's heads (4096/256/4096), batch 256,
a 30-epoch schedule with 10 warm-up epochs (the `paper` profile's shape), seed 0.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("kl", "z_spread", "logvar_student", "logvar_teacher", "likelihood", "grad_norm")


def parse_config(text: str) -> tuple[str, str, list[str]]:
    """``"name:entry:k=v,k=v"`` | ``"entry"`` -> (name, entry, overrides)."""
    parts = text.split(":", 2)
    if len(parts) == 1:
        return text, text, []
    if len(parts) != 3:
        raise SystemExit(f"bad config {text!r}: use ENTRY or NAME:ENTRY:key=value,...")
    name, entry, sets = parts
    return name, entry, [s for s in sets.split(",") if s]


def run_config(args: argparse.Namespace, name: str, entry: str, sets: list[str]) -> dict:
    import torch
    import torch.nn.functional as F

    from vssl.augment import GPUTwoViewAugment, eval_transform, get_preset
    from vssl.config import load_params
    from vssl.data import get_spec, load_tensors
    from vssl.eval.uncertainty import auroc
    from vssl.train.assembly import build_method
    from vssl.train.loader import STEP, batched_epoch, epoch_micro_batches, mix_seed
    from vssl.train.monitor import embedding_spread, knn_top1
    from vssl.train.optim import build_optimizer, build_scheduler, scaled_lr

    over = [
        f"backbone.width={args.width}",
        f"pretrain.batch_size={args.batch_size}",
        f"pretrain.epochs={args.epochs}",
        f"pretrain.warmup_epochs={args.warmup_epochs}",
        *sets,
    ]
    params = load_params(ROOT / "params.yaml", profile="paper", overrides=over, entry=entry)
    method = params.entry_method(entry)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    spec = get_spec("cifar10_mini", params)
    model, _ = build_method(method, params, {"channels": 3, "image_size": 32})
    oc = params.optimizer_cfg(method)
    bs = params.pretrain.batch_size
    opt = build_optimizer(
        oc["optimizer"],
        model,
        lr=scaled_lr(oc["base_lr"], bs),
        weight_decay=oc["weight_decay"],
        momentum=oc["momentum"],
        lars_eta=oc["lars_eta"],
    )
    x, y = load_tensors("cifar10_mini", "train", params)
    per_epoch = len(y) // bs
    total = per_epoch * params.pretrain.epochs
    sched = build_scheduler(opt, round(oc["warmup_epochs"] * per_epoch), total, oc["min_lr"])
    augment = GPUTwoViewAugment(get_preset(spec.preset), spec.mean, spec.std)
    clip = oc.get("grad_clip_norm")
    trainable = [p for p in model.parameters() if p.requires_grad]
    rows, step, t0 = [], 0, time.perf_counter()
    for epoch in range(params.pretrain.epochs):
        plan = epoch_micro_batches(len(y), bs, 1, 1, 0, args.seed, epoch)
        torch.manual_seed(mix_seed(args.seed, STEP, epoch, 0))
        for x1, x2, _ in batched_epoch(x, y, augment, plan, args.seed, epoch, 0):
            model.train()
            out = model.training_step(x1, x2)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            gn = torch.nn.utils.clip_grad_norm_(trainable, clip if clip else math.inf)
            opt.step()
            sched.step()
            step += 1
            model.momentum_update(step, total)
            if step == 1 or step % args.every == 0:
                r = {"step": step, "loss": float(out["loss"].detach()), "grad_norm": float(gn)}
                r.update({k: float(v) for k, v in out.items() if k != "loss" and v.ndim == 0})
                r["z_spread"] = float(embedding_spread(out["z"]))
                r["seconds"] = time.perf_counter() - t0
                rows.append(r)
                shown = {k: round(v, 4) for k, v in r.items() if k in ("step", *COLUMNS)}
                print(name, json.dumps(shown), flush=True)
            if step >= args.steps:
                break
        if step >= args.steps:
            break

    tf = eval_transform(get_preset(spec.preset), spec.mean, spec.std)
    xt, yt = load_tensors("cifar10_mini", "test", params)
    model.eval()
    with torch.no_grad():
        ftr = torch.cat([model.backbone(tf(x[i : i + 512])) for i in range(0, len(x), 512)])
        fte = torch.cat([model.backbone(tf(xt[i : i + 512])) for i in range(0, len(xt), 512)])
    result = {"knn20_top1": knn_top1(ftr, y, fte, yt, num_classes=spec.num_classes)}
    if method == "vssl":
        with torch.no_grad():
            lv = torch.cat([model.prior(tf(xt[i : i + 512]))[1] for i in range(0, len(xt), 512)])
        sim = F.normalize(fte, dim=1) @ F.normalize(ftr, dim=1).T
        w, idx = sim.topk(20, dim=1)
        votes = torch.zeros(len(fte), spec.num_classes).scatter_add_(1, y[idx], (w / 0.07).exp())
        wrong = (votes.argmax(1) != yt).numpy()
        result["variance_auroc_knn_errors"] = auroc(lv.exp().mean(1).numpy(), wrong)
        result["test_logvar_mean"] = float(lv.mean())
    return {
        "name": name,
        "entry": entry,
        "overrides": sets,
        "rows": rows,
        "result": result,
        "seconds": time.perf_counter() - t0,
    }


def cmd_run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for text in args.configs:
        name, entry, sets = parse_config(text)
        if (out / f"{name}.json").exists() and not args.overwrite:
            print(f"{name}: {out / f'{name}.json'} exists, skipped (--overwrite to redo)")
            continue
        rec = run_config(args, name, entry, sets)
        rec["settings"] = {
            k: getattr(args, k)
            for k in ("steps", "width", "batch_size", "epochs", "warmup_epochs", "seed")
        }
        rec["machine"] = f"{platform.machine()} {platform.python_version()}"
        rec["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        (out / f"{name}.json").write_text(json.dumps(rec, indent=1))
        print(name, "result", json.dumps(rec["result"]), flush=True)
    cmd_plot(argparse.Namespace(folder=out))


def cmd_plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    folder = Path(args.folder)
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    frames = [pd.DataFrame(r["rows"]).assign(config=r["name"]) for r in recs]
    data = pd.concat(frames, ignore_index=True)
    cols = [c for c in COLUMNS if c in data.columns]
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, col in zip(axes.flat, cols, strict=False):
        sns.lineplot(data=data, x="step", y=col, hue="config", ax=ax, legend=ax is axes.flat[0])
        if col in ("kl", "grad_norm"):
            ax.set_yscale("log")
        ax.set_title(col)
        ax.set_ylabel("")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[0].get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    warm = {r.get("settings", {}).get("warmup_epochs") for r in recs} - {None}
    fig.suptitle(
        "VSSL dynamics on cifar10-mini (ResNet-18 w16, batch 256, LARS lr 1.0, warm-up "
        f"{'/'.join(f'{w:g}' for w in sorted(warm))} epochs)"
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(folder / "dynamics.png", dpi=100, bbox_inches="tight")
    lines = [
        "| config | KL first -> max -> last | z_spread last | logvar s / t last | kNN-20 | AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for r in recs:
        rows, res = r["rows"], r["result"]
        kl = [x.get("kl") for x in rows if x.get("kl") is not None]
        klt = f"{kl[0]:.3g} -> {max(kl):.3g} -> {kl[-1]:.3g}" if kl else "-"
        last = rows[-1]
        lv = (
            f"{last['logvar_student']:.2f} / {last['logvar_teacher']:.2f}"
            if "logvar_student" in last
            else "-"
        )
        auc, knn = res.get("variance_auroc_knn_errors"), res.get("knn20_top1")
        lines.append(
            f"| {r['name']} (step {last['step']}) | {klt} | {last['z_spread']:.3f} | {lv} | "
            f"{'-' if knn is None else f'{knn:.1f}'} | {'-' if auc is None else f'{auc:.3f}'} |"
        )
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the configs and write one JSON each, then plot")
    r.add_argument("configs", nargs="+")
    r.add_argument("--out", required=True)
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--every", type=int, default=10)
    r.add_argument("--width", type=int, default=16)
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--warmup-epochs", type=float, default=10)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(fn=cmd_run)
    q = sub.add_parser("plot", help="redraw dynamics.png and summary.md from saved JSONs")
    q.add_argument("folder")
    q.set_defaults(fn=cmd_plot)
    args = p.parse_args(argv)
    print(" ".join(["python", *sys.argv]), flush=True)
    args.fn(args)


if __name__ == "__main__":
    main()
