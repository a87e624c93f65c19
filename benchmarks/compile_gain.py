"""What ``torch.compile`` does to the training module's forward and backward, per method.

The engine's ``TrainModule`` (method + online probe; channels-last, as the engine builds it) on
random views, eager and compiled (``vssl.train.assembly.compile_train_module``, the engine's
call): the median time of ``--steps`` forward + backward passes after 2 untimed ones (the first
compiles). No optimiser, augmentation or monitors: whether compiling pays for a method's own
graph, apart from the rest of the step. Compiled, it also counts the kernels inductor generates
for forward and backward (``torch._inductor.metrics``, with inductor's caches off so that every
graph is generated): how much work the fused graph launches, per method.

    python benchmarks/compile_gain.py --width 16 --batch-size 64 --steps 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vssl.methods import build  # noqa: E402
from vssl.models import build_backbone  # noqa: E402
from vssl.train.assembly import TrainModule, compile_train_module, online_probe  # noqa: E402

HEADS = {"proj_hidden_dim": 4096, "pred_hidden_dim": 4096}  # params.yaml's (solo-learn's)
VARIANTS = {
    "byol": ("byol", {"proj_output_dim": 256}),
    "vssl": ("vssl", {"latent_dim": 256}),
    "vssl-nosample": ("vssl", {"latent_dim": 256, "sample": False}),
    "vssl-nokl": ("vssl", {"latent_dim": 256, "kl": "none"}),
}


def time_module(
    name: str, width: int, batch: int, steps: int, compiled: bool
) -> tuple[float, int | None]:
    """Median milliseconds of one forward + backward of ``name``'s training module, and the
    kernels inductor generated for it (None: eager)."""
    from torch._inductor import config as inductor_config
    from torch._inductor import metrics

    method, extra = VARIANTS[name]
    torch.manual_seed(0)
    backbone, dim = build_backbone("resnet18", width=width, in_channels=3, image_size=32)
    module = TrainModule(build(method, {**HEADS, **extra}, backbone, dim), online_probe(dim, 10))
    module = module.to(memory_format=torch.channels_last)
    if compiled:
        torch._dynamo.reset()
        metrics.reset()
        inductor_config.fx_graph_cache = False  # a cache hit generates no kernels to count
        inductor_config.autotune_local_cache = False
        compile_train_module(module)
    views = [
        torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        for _ in range(2)
    ]
    y = torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        out = module(*views, y)
        (out["loss"] + out["probe_loss"]).backward()
        module.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), metrics.generated_kernel_count if compiled else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--modes", nargs="+", default=["eager", "compiled"],
                    choices=["eager", "compiled"])  # fmt: skip
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)  # as the engine
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, width {args.width}, "
          f"batch {args.batch_size}, median of {args.steps}")  # fmt: skip
    head = " | ".join(f"{m} ms" for m in args.modes)
    print(f"| variant | {head} | compiled / eager | kernels generated |")
    print("|---|" + "---:|" * (len(args.modes) + 2))
    for name in args.variants:
        res = {m: time_module(name, args.width, args.batch_size, args.steps, m == "compiled")
               for m in args.modes}  # fmt: skip
        ms = {m: r[0] for m, r in res.items()}
        ratio = f"{ms['compiled'] / ms['eager']:.3f}" if len(ms) == 2 else "-"
        kernels = res["compiled"][1] if "compiled" in res else "-"
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in ms.values()) +
              f" | {ratio} | {kernels} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
