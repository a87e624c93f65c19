"""Does VSSL's variance rank the errors of a probe that reads its own latent space better?

The pipeline's error AUROC ranks the errors of a linear probe on the *backbone* features by
the posterior variance, which belongs to the *latent* ``z``. This script refits the pipeline's
linear probe (:func:`vssl.eval.linear.linear_probe`, ``probe.linear`` of params.yaml) on three
inputs from one ``vssl extract`` folder (``train.npz``/``test.npz`` with ``mu`` and ``logvar``):

* ``features``: the backbone features (the pipeline's protocol),
* ``mu``: the posterior mean,
* ``mu direction``: the posterior mean scaled to unit length (what the cosine terms compare),

and for each probe's held-out errors prints the AUROC of the posterior's mean variance beside
label-free baselines (minus the backbone feature's norm; minus the mean cosine similarity to the
20 nearest training features, a density score) and, as a reference that knows the classes, the
probe's own confidence (``1 - max softmax``). 0.5: no information.

    python benchmarks/latent_probe_auroc.py features/long/cifar10_mini/vssl/seed0 \
        [--profile long] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from variance_aggregations import density, unit  # noqa: E402

from vssl.config import load_params  # noqa: E402
from vssl.eval.linear import linear_probe  # noqa: E402
from vssl.eval.uncertainty import auroc, mean_variance  # noqa: E402


def probe_inputs(train: dict, test: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three probe inputs of the module docstring, (train, test) each."""
    return {
        "features": (train["features"], test["features"]),
        "mu": (train["mu"], test["mu"]),
        "mu direction": (unit(train["mu"]), unit(test["mu"])),
    }


def evaluate(feature_dir: Path, probe_cfg) -> dict:
    """Per probe input: its top-1 and the error AUROCs of the variance, baselines and probe."""
    with np.load(feature_dir / "train.npz") as a, np.load(feature_dir / "test.npz") as b:
        train, test = {k: a[k] for k in a.files}, {k: b[k] for k in b.files}
    if "logvar" not in test:
        raise SystemExit(f"{feature_dir}: no `logvar` in test.npz (not a VSSL extraction)")
    classes = int(max(train["labels"].max(), test["labels"].max())) + 1
    label_free = {
        "posterior variance": mean_variance(test["logvar"]),
        "-feature norm": -np.linalg.norm(test["features"], axis=1),
        "-similarity to 20 nearest train features": -density(test["features"], train["features"]),
    }
    out = {}
    for name, (x_train, x_test) in probe_inputs(train, test).items():
        with warnings.catch_warnings():  # a capped L-BFGS fit warns; the AUROCs stand
            warnings.simplefilter("ignore")
            res = linear_probe(
                x_train.astype(np.float32), train["labels"], x_test.astype(np.float32),
                test["labels"], classes, weight_decays=probe_cfg.weight_decays,
                val_fraction=probe_cfg.val_fraction, max_iter=probe_cfg.max_iter,
                lr=probe_cfg.lr, device="cpu",
            )  # fmt: skip
        errors = res.predictions != test["labels"]
        confidence = 1 - torch.softmax(res.test_logits.double(), 1).max(1).values.numpy()
        aurocs = {s: auroc(v, errors) for s, v in label_free.items()}
        aurocs["probe's own confidence (knows the classes)"] = auroc(confidence, errors)
        out[name] = {"top1": 100 * (1 - float(errors.mean())), "auroc": aurocs}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("features", type=Path, help="a `vssl extract` folder of a VSSL run")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--profile", default=None, help="whose probe settings (default: base)")
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = p.parse_args(argv)
    probe_cfg = load_params(args.params, profile=args.profile).probe.linear
    result = evaluate(args.features, probe_cfg)
    for name, r in result.items():
        scores = "  ".join(f"{s} {v:.3f}" for s, v in r["auroc"].items())
        print(f"probe on {name}: top-1 {r['top1']:.1f}; error AUROC: {scores}")
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"features": str(args.features), "probes": result}, indent=1))
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
