"""What VSSL's predicted variance knows: error AUROCs of several per-image scores.

For a trained VSSL checkpoint and its probe sidecar (``vssl probe`` writes
``results/probes/<profile>/<dataset>/<variant>/seed<s>.uncertainty.csv``: which held-out images
the linear probe got wrong), scores every held-out image by

* ``teacher variance (clean)``: the mean of ``exp(logvar_t)`` of the un-augmented image (the
  prior's; what ``vssl probe`` reported before 2026-11-26);
* ``student variance (clean)``: the posterior's (the student's) mean variance of the same image,
  what ``vssl probe`` reports as ``uncertainty_error_auroc``;
* ``student entropy (clean)``: the mean of the posterior's log-variances of the same image, the
  Gaussian's differential entropy up to constants (a geometric rather than arithmetic mean
  of the variances: a few large coordinates weigh less);
* ``student variance (views)``: the student's mean variance on augmented views;
* ``cross-view disagreement``: ``1 - cos(mu_s(view a), mu_t(view b))`` averaged over
  ``--draws`` pairs of views, the quantity the likelihood fits the student's variance to;
* ``-feature norm``: minus the backbone feature's norm (a method-free baseline);
* ``KL(posterior, prior) (clean)`` and ``likelihood term (clean)``: VSSL's own two terms
  (:func:`vssl.methods.vssl.vssl_pair_terms`, the checkpoint's settings) between the student's
  posterior and the teacher's prior of the *same* clean image: how much the model's two halves
  disagree about it (the likelihood's sample seeded);
* ``student-teacher disagreement (clean)``: ``1 - cos(mu_s(x), mu_t(x))`` on the clean image;
* ``-similarity to 20 nearest train images``: minus the mean cosine similarity of the image's
  backbone feature to its 20 nearest training features (a label-free density score: images in
  sparse regions of the representation);

and prints each one's AUROC for separating the probe's errors from its hits, then the main
ones against the errors of the kNN-20 probe (the pipeline's, on the same backbone features),
with that probe's own confidence (``1 -`` the winning class's share of the weighted votes) as
a reference that is not label-free (0.5: no information), and the correlation between
predicted variance and disagreement (does the variance learn what it is trained to predict?).
The reported score is also taken apart (:func:`anatomy`, from the sidecar alone): the error
rate per variance decile, the AUROC within each class (how much of the ranking is "which class
is easy"), and the classes of the most confident decile.

``--crop-levels`` adds the *information-loss* test: every held-out image is centre-cropped to
a fraction ``s`` of its area and resized back (the training recipe's main way of removing
information), a linear probe fitted on the clean train features (the pipeline's protocol,
:func:`vssl.eval.linear.linear_probe`) classifies it, and the table gives, per level, the
probe's accuracy and the mean teacher and student variances. On the *mixed* set (each image at
one level drawn at random, seeded) it reports the error AUROC of each variance and their rank
correlation with ``s``: does the variance rise where the input carries less information?
It also gives, as a reference that is not label-free, the error AUROC of that probe's own
confidence (``1 - max softmax``) on the clean images beside the posterior variance's for the
same errors: how rankable the errors of a representation this accurate are at all.

    python benchmarks/variance_auroc.py runs/ablations/cifar10_mini/vssl/seed0/checkpoint.pt \
        results/probes/ablations/cifar10_mini/vssl/seed0.uncertainty.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vssl.augment import TensorTwoViewAugment, eval_transform, get_preset  # noqa: E402
from vssl.data import get_spec, load_tensors  # noqa: E402
from vssl.eval.knn import knn_classify_multi  # noqa: E402
from vssl.eval.linear import linear_probe  # noqa: E402
from vssl.eval.metrics import class_rank  # noqa: E402
from vssl.eval.uncertainty import auroc  # noqa: E402
from vssl.methods.vssl import Gaussian, vssl_pair_terms  # noqa: E402
from vssl.train.checkpoint import load_checkpoint, method_from_checkpoint  # noqa: E402


class Trained(NamedTuple):
    """A VSSL checkpoint's model (eval mode) with its params, data spec and eval transform."""

    dataset: str
    model: torch.nn.Module
    params: object
    spec: object
    tf: object


def load_trained(ckpt_path: Path) -> Trained:
    ck = load_checkpoint(ckpt_path, expect={"method": "vssl"})
    model, params = method_from_checkpoint(ck)
    spec = get_spec(ck["dataset"], params)
    tf = eval_transform(get_preset(spec.preset), spec.mean, spec.std)
    return Trained(ck["dataset"], model.eval(), params, spec, tf)


def anatomy(side, n_bins: int = 10) -> dict:
    """Where the reported score's ranking comes from, read off the probe's sidecar.

    ``side`` has one row per held-out image with ``label``, ``correct`` and ``mean_variance``
    (the posterior's mean variance of the clean image, the pipeline's score). Returns the probe's
    error rate (%) per variance bin (equal counts, lowest variance first), the mean over classes of
    the within-class error AUROC (classes where the probe is neither always right nor always
    wrong), and the label counts in the lowest-variance bin.
    """
    from vssl.report.figures import error_by_decile

    # the pipeline's figure bins the same way: the numbers match its uncertainty.png
    run = side.assign(dataset="-", method="vssl", seed=0, correct=side["correct"].astype(bool))
    rates = error_by_decile(run, bins=n_bins)["error_rate"]
    first = side["mean_variance"].rank(method="first") <= len(side) / n_bins
    within = [
        auroc(g["mean_variance"].to_numpy(), ~g["correct"].astype(bool).to_numpy())
        for _, g in side.groupby("label")
        if 0 < g["correct"].mean() < 1
    ]
    low = side.loc[first, "label"]
    return {
        "error_rate_by_variance_bin": [float(r) for r in rates],
        "within_class_auroc_mean": float(np.mean(within)) if within else float("nan"),
        "lowest_bin_label_counts": {
            int(k): int(v) for k, v in low.value_counts().sort_index().items()
        },
    }


def scores(trained: Trained, sidecar: Path, draws: int, seed: int) -> dict:
    import pandas as pd

    model, spec, tf = trained.model, trained.spec, trained.tf
    x, y = load_tensors(trained.dataset, "test", trained.params)
    side = pd.read_csv(sidecar)
    if len(side) != len(y) or not np.array_equal(side["label"].to_numpy(), y.numpy()):
        raise SystemExit(f"{sidecar} does not describe {trained.dataset}'s test split")
    wrong = ~side["correct"].astype(bool).to_numpy()
    recipe = get_preset(spec.preset)
    aug = TensorTwoViewAugment(recipe, spec.mean, spec.std, channels_last=False)
    torch.manual_seed(seed)
    n = len(y)
    dis, var_views = np.zeros(n), np.zeros(n)
    with torch.no_grad():
        for _ in range(draws):
            for i in range(0, n, 500):
                v1, v2 = aug(x[i : i + 500])
                _, q, _ = model.encode_student(v1)
                t = model.encode_teacher(v2)
                dis[i : i + 500] += (1 - F.cosine_similarity(q.mu, t.mu)).numpy() / draws
                var_views[i : i + 500] += q.logvar.exp().mean(1).numpy() / draws
        clean = tf(x)
        mu_t, lv = model.prior(clean)
        mu_s, lv_student = model.gaussian(clean)
        var_student_clean = lv_student.exp().mean(1).numpy()
        entropy_student_clean = lv_student.mean(1).numpy()
        feats = model.backbone(clean)
        norm = feats.norm(dim=1).numpy()
        # VSSL's own terms between the two halves' Gaussians of the same clean image
        nll, kl = vssl_pair_terms(Gaussian(mu_s, lv_student), Gaussian(mu_t, lv), **model.terms)
        st_dis = (1 - F.cosine_similarity(mu_s, mu_t)).numpy()
        xt, yt = load_tensors(trained.dataset, "train", trained.params)
        bank = torch.cat([model.backbone(tf(xt[i : i + 500])) for i in range(0, len(xt), 500)])
        sim = F.normalize(feats, dim=1) @ F.normalize(bank, dim=1).T
        density = sim.topk(20, dim=1).values.mean(1).numpy()
        # the kNN-20 probe's own votes (the pipeline's kNN: cosine, weights exp(s / 0.07))
        votes = knn_classify_multi(bank, yt, feats, [20], 0.07, spec.num_classes)[20]
        knn_wrong = (class_rank(votes, y) != 0).numpy()
        knn_conf = (votes / votes.sum(1, keepdim=True)).max(1).values.numpy()
    var_clean = lv.exp().mean(1).numpy()
    st_knn = {
        "student variance (clean)": var_student_clean,
        "teacher variance (clean)": var_clean,
        "cross-view disagreement": dis,
        "-feature norm": -norm,
        "student-teacher disagreement (clean)": st_dis,
        "-similarity to 20 nearest train images": -density,
        "1 - kNN vote share (not label-free; reference)": 1 - knn_conf,
    }
    return {
        "n_test": n,
        "probe_error_rate": float(wrong.mean()),
        "auroc": {
            "teacher variance (clean)": auroc(var_clean, wrong),
            "student variance (clean)": auroc(var_student_clean, wrong),
            "student entropy (clean)": auroc(entropy_student_clean, wrong),
            "student variance (views)": auroc(var_views, wrong),
            "cross-view disagreement": auroc(dis, wrong),
            "-feature norm": auroc(-norm, wrong),
            "KL(posterior, prior) (clean)": auroc(kl.numpy(), wrong),
            "likelihood term (clean)": auroc(nll.numpy(), wrong),
            "student-teacher disagreement (clean)": auroc(st_dis, wrong),
            "-similarity to 20 nearest train images": auroc(-density, wrong),
        },
        "knn20": {
            "error_rate": float(knn_wrong.mean()),
            "auroc": {k: auroc(v, knn_wrong) for k, v in st_knn.items()},
        },
        "corr(student variance, disagreement)": float(np.corrcoef(var_views, dis)[0, 1]),
        "corr(teacher variance, disagreement)": float(np.corrcoef(var_clean, dis)[0, 1]),
        "draws": draws,
        "seed": seed,
        "reported score": anatomy(side),
    }


def centre_crop_views(x: torch.Tensor, area: float, tf, size: int) -> torch.Tensor:
    """uint8 images -> the centre ``area`` fraction of each, resized back to ``size``, then
    the evaluation transform (normalised float)."""
    from torchvision.transforms import v2

    side = max(1, round(x.shape[-1] * area**0.5))
    cropped = v2.functional.center_crop(x, [side, side])
    return tf(v2.functional.resize(cropped, [size, size], antialias=True))


def information_loss(trained: Trained, levels: list[float], seed: int) -> dict:
    """Probe accuracy and predicted variances on centre crops of ``levels`` (area fractions)."""
    model, spec, tf = trained.model, trained.spec, trained.tf
    size = get_preset(spec.preset).size
    x_tr, y_tr = load_tensors(trained.dataset, "train", trained.params)
    x_te, y_te = load_tensors(trained.dataset, "test", trained.params)

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        feats, var_t, var_s = [], [], []
        with torch.no_grad():
            for i in range(0, len(x), 500):
                f, q, _ = model.encode_student(x[i : i + 500])
                _, lv = model.prior(x[i : i + 500])
                feats.append(f)
                var_s.append(q.logvar.exp().mean(1).numpy())
                var_t.append(lv.exp().mean(1).numpy())
        return torch.cat(feats), np.concatenate(var_t), np.concatenate(var_s)

    f_tr, _, _ = encode(tf(x_tr))
    f_clean, _, var_s_clean = encode(tf(x_te))
    probe = linear_probe(f_tr, y_tr.numpy(), f_clean, y_te.numpy(), spec.num_classes, seed=seed)
    # A reference, not a label-free score: how well the probe's own confidence ranks its errors
    # on the clean images (what a score that knows the classes gets at this accuracy).
    with torch.no_grad():
        prob = probe.model.logits(f_clean).softmax(1)
    wrong_clean = (prob.argmax(1) != y_te).numpy()
    clean = {
        "probe_error_rate": float(wrong_clean.mean()),
        "auroc": {
            "student variance": auroc(var_s_clean, wrong_clean),
            "1 - max softmax (probe's own; reference)": auroc(
                1 - prob.max(1).values.numpy(), wrong_clean
            ),
        },
    }
    n = len(y_te)
    per_level, correct, var_t, var_s = [], {}, {}, {}
    for s in levels:
        f, vt, vs = encode(centre_crop_views(x_te, s, tf, size))
        ok = (probe.model.logits(f).argmax(1) == y_te).numpy()
        correct[s], var_t[s], var_s[s] = ok, vt, vs
        per_level.append(
            {
                "area": s,
                "probe_top1": 100 * float(ok.mean()),
                "teacher_variance": float(vt.mean()),
                "student_variance": float(vs.mean()),
            }
        )
    pick = np.random.default_rng(seed).integers(len(levels), size=n)
    area = np.array([levels[k] for k in pick])
    rows = np.arange(n)
    ok = np.array([correct[levels[k]][i] for i, k in zip(rows, pick, strict=True)])
    vt = np.array([var_t[levels[k]][i] for i, k in zip(rows, pick, strict=True)])
    vs = np.array([var_s[levels[k]][i] for i, k in zip(rows, pick, strict=True)])
    return {
        "clean_probe_top1": probe.top1,
        "clean": clean,
        "levels": per_level,
        "mixed": {
            "probe_error_rate": float(1 - ok.mean()),
            "auroc": {
                "teacher variance": auroc(vt, ~ok),
                "student variance": auroc(vs, ~ok),
                "1 - crop area (oracle)": auroc(-area, ~ok),
            },
            "spearman(teacher variance, area)": float(spearmanr(vt, area).statistic),
            "spearman(student variance, area)": float(spearmanr(vs, area).statistic),
        },
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("sidecar", type=Path, help="the probe's <stem>.uncertainty.csv")
    p.add_argument("--draws", type=int, default=4, help="pairs of views per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    p.add_argument(
        "--crop-levels",
        type=float,
        nargs="*",
        default=None,
        metavar="AREA",
        help="also run the information-loss test at these centre-crop area fractions",
    )
    args = p.parse_args(argv)
    if args.crop_levels and not all(0 < a <= 1 for a in args.crop_levels):
        p.error("--crop-levels must lie in (0, 1]")
    torch.set_flush_denormal(True)
    trained = load_trained(args.checkpoint)
    res = {"checkpoint": str(args.checkpoint)}
    res |= scores(trained, args.sidecar, args.draws, args.seed)
    if args.crop_levels:
        res["information_loss"] = information_loss(trained, args.crop_levels, args.seed)
    for name, value in res["auroc"].items():
        print(f"AUROC {name:<38} {value:.3f}")
    for key in ("corr(student variance, disagreement)", "corr(teacher variance, disagreement)"):
        print(f"{key:<40} {res[key]:+.3f}")
    knn = res["knn20"]
    print(f"against the kNN-20 probe's errors (rate {knn['error_rate']:.2f}):")
    for name, value in knn["auroc"].items():
        print(f"  AUROC {name:<46} {value:.3f}")
    parts = res["reported score"]
    rates = " ".join(f"{r:.0f}" for r in parts["error_rate_by_variance_bin"])
    print(f"probe error % by variance decile (low -> high): {rates}")
    print(f"AUROC student variance (clean), within class   {parts['within_class_auroc_mean']:.3f}")
    print(f"labels of the lowest-variance decile: {parts['lowest_bin_label_counts']}")
    if "information_loss" in res:
        info = res["information_loss"]
        print(
            f"\nclean images, this probe's errors (rate {info['clean']['probe_error_rate']:.2f}):"
        )
        for name, value in info["clean"]["auroc"].items():
            print(f"AUROC {name:<26} {value:.3f}")
        print(f"\ncentre crops (clean probe top-1 {info['clean_probe_top1']:.1f}):")
        print("area   probe top-1   teacher var   student var")
        for row in info["levels"]:
            print(
                f"{row['area']:<6.2f} {row['probe_top1']:>11.1f}   {row['teacher_variance']:>11.4f}"
                f"   {row['student_variance']:>11.4f}"
            )
        mixed = info["mixed"]
        print(f"mixed levels (error rate {mixed['probe_error_rate']:.2f}):")
        for name, value in mixed["auroc"].items():
            print(f"AUROC {name:<26} {value:.3f}")
        for key in ("spearman(teacher variance, area)", "spearman(student variance, area)"):
            print(f"{key:<40} {mixed[key]:+.3f}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
