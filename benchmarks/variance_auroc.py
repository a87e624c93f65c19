"""What VSSL's predicted variance knows: error AUROCs of several per-image scores.

For a trained VSSL checkpoint and its probe sidecar (``vssl probe`` writes
``results/probes/<profile>/<dataset>/<variant>/seed<s>.uncertainty.csv``: which held-out images
the linear probe got wrong), scores every held-out image by

* ``teacher variance (clean)``: the mean of ``exp(logvar_t)`` of the un-augmented image, what
  ``vssl probe`` reports as ``uncertainty_error_auroc``;
* ``student variance (views)``: the student's mean variance on augmented views;
* ``cross-view disagreement``: ``1 - cos(mu_s(view a), mu_t(view b))`` averaged over
  ``--draws`` pairs of views, the quantity the likelihood fits the student's variance to;
* ``-feature norm``: minus the backbone feature's norm (a method-free baseline);

and prints each one's AUROC for separating the probe's errors from its hits (0.5: no
information), plus the correlation between predicted variance and disagreement (does the
variance learn what it is trained to predict?).

    python benchmarks/variance_auroc.py runs/ablations/cifar10_mini/vssl/seed0/checkpoint.pt \
        results/probes/ablations/cifar10_mini/vssl/seed0.uncertainty.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vssl.augment import TensorTwoViewAugment, eval_transform, get_preset  # noqa: E402
from vssl.data import get_spec, load_tensors  # noqa: E402
from vssl.eval.uncertainty import auroc  # noqa: E402
from vssl.train.checkpoint import load_checkpoint, method_from_checkpoint  # noqa: E402


def scores(ckpt_path: Path, sidecar: Path, draws: int, seed: int) -> dict:
    import pandas as pd

    ck = load_checkpoint(ckpt_path, expect={"method": "vssl"})
    model, params = method_from_checkpoint(ck)
    spec = get_spec(ck["dataset"], params)
    x, y = load_tensors(ck["dataset"], "test", params)
    side = pd.read_csv(sidecar)
    if len(side) != len(y) or not np.array_equal(side["label"].to_numpy(), y.numpy()):
        raise SystemExit(f"{sidecar} does not describe {ck['dataset']}'s test split")
    wrong = ~side["correct"].astype(bool).to_numpy()
    recipe = get_preset(spec.preset)
    aug = TensorTwoViewAugment(recipe, spec.mean, spec.std, channels_last=False)
    tf = eval_transform(recipe, spec.mean, spec.std)
    torch.manual_seed(seed)
    n = len(y)
    dis, var_views = np.zeros(n), np.zeros(n)
    model.eval()
    with torch.no_grad():
        for _ in range(draws):
            for i in range(0, n, 500):
                v1, v2 = aug(x[i : i + 500])
                _, q, _ = model.encode_student(v1)
                t = model.encode_teacher(v2)
                dis[i : i + 500] += (1 - F.cosine_similarity(q.mu, t.mu)).numpy() / draws
                var_views[i : i + 500] += q.logvar.exp().mean(1).numpy() / draws
        clean = tf(x)
        _, lv = model.gaussian(clean)
        norm = model.backbone(clean).norm(dim=1).numpy()
    var_clean = lv.exp().mean(1).numpy()
    return {
        "checkpoint": str(ckpt_path),
        "n_test": n,
        "probe_error_rate": float(wrong.mean()),
        "auroc": {
            "teacher variance (clean)": auroc(var_clean, wrong),
            "student variance (views)": auroc(var_views, wrong),
            "cross-view disagreement": auroc(dis, wrong),
            "-feature norm": auroc(-norm, wrong),
        },
        "corr(student variance, disagreement)": float(np.corrcoef(var_views, dis)[0, 1]),
        "corr(teacher variance, disagreement)": float(np.corrcoef(var_clean, dis)[0, 1]),
        "draws": draws,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("sidecar", type=Path, help="the probe's <stem>.uncertainty.csv")
    p.add_argument("--draws", type=int, default=4, help="pairs of views per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    res = scores(args.checkpoint, args.sidecar, args.draws, args.seed)
    for name, value in res["auroc"].items():
        print(f"AUROC {name:<26} {value:.3f}")
    for key in ("corr(student variance, disagreement)", "corr(teacher variance, disagreement)"):
        print(f"{key:<40} {res[key]:+.3f}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
