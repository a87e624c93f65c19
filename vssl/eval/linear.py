"""Linear probe: multinomial logistic regression on frozen, standardised features.

Protocol (the numbers in the results table):

1. carve a seeded, stratified validation split (``val_fraction``) out of train;
2. standardise with the statistics of the fitting part, ``x' = (x - mean) / std`` (a constant
   feature keeps std 1 so it maps to 0 instead of dividing by zero);
3. for each weight decay ``lambda`` in the grid minimise the convex objective

   ``L(W, b) = (1/n) sum_i -log softmax(W x'_i + b)_{y_i} + (lambda / 2) ||W||_F^2``

   (the bias is not decayed; this is scikit-learn's ``LogisticRegression`` with
   ``C = 1 / (lambda * n)``) and score top-1 on the validation part;
4. refit on all of train (its own statistics) with the best ``lambda`` (ties -> larger
   ``lambda``) and report top-1 / top-5 on test.

The optimiser is full-batch L-BFGS with a strong-Wolfe line search from zero weights: no
sampling, hence deterministic on a fixed machine, and a few seconds for 50k x 512 features.
``max_iter`` bounds the L-BFGS iterations (``probe.linear.max_iter``: each iteration is at least
one pass over the data).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vssl.eval.metrics import topk_accuracy


@dataclass(frozen=True)
class LinearModel:
    """A fitted probe: ``logits = ((x - mean) / std) @ weight.T + bias``."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def logits(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = _as_float(x).to(self.weight.device)
        return F.linear((x - self.mean) / self.std, self.weight, self.bias)

    def reparametrize(
        self, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(W', b') giving the same logits on inputs standardised with (mean, std) instead:
        ``W' = W * std / self.std`` and ``b' = b + W ((mean - self.mean) / self.std)``."""
        w = self.weight * (std / self.std)
        b = self.bias + self.weight @ ((mean - self.mean) / self.std)
        return w.clone(), b.clone()


@dataclass
class LinearProbeResult:
    """Outcome of :func:`linear_probe`; accuracies are percentages."""

    weight_decay: float
    val_top1: dict[float, float]
    top1: float
    top5: float
    test_logits: torch.Tensor  # (N_test, C)
    model: LinearModel
    fits: dict[str, FitInfo] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return all(f.converged for f in self.fits.values())

    @property
    def predictions(self) -> np.ndarray:
        return self.test_logits.argmax(1).cpu().numpy()


def _as_float(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(torch.float32)


def validation_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``range(N)`` into (fit, val) index arrays (both sorted).

    Each class contributes ``round(val_fraction * n_c)`` samples to val, but always leaves at
    least one in fit (a singleton class stays entirely in fit). When that rounds every class to
    zero (many classes, few samples each: 100 classes of 5), val takes one sample from each of
    ``max(1, round(val_fraction * N))`` seeded classes that have two or more instead.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    spare: list[int] = []  # one sample of each class with two or more, for the fallback
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(int(round(val_fraction * idx.size)), idx.size - 1)
        val.append(idx[:n_val])
        if idx.size >= 2:
            spare.append(int(idx[0]))
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    if val_idx.size == 0 and spare:
        n_val = min(max(1, int(round(val_fraction * labels.size))), len(spare))
        val_idx = np.sort(rng.permutation(np.array(spare))[:n_val])
    if val_idx.size == 0:
        raise ValueError(
            f"val_fraction={val_fraction} of {labels.size} samples leaves an empty validation "
            "split (no class has two samples)"
        )
    fit_mask = np.ones(labels.size, dtype=bool)
    fit_mask[val_idx] = False
    return np.flatnonzero(fit_mask), val_idx


def standardization(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (mean, std) of ``x``; std below ``eps`` (constant features) becomes 1."""
    std, mean = torch.std_mean(x, dim=0, correction=0)  # torch's reduction is numerically stable
    return mean, torch.where(std < eps, torch.ones_like(std), std)


@dataclass(frozen=True)
class FitInfo:
    """How an L-BFGS fit ended: iterations, convergence (max |grad| <= tolerance or stopped
    early on a flat objective), the final max |grad| and objective value."""

    iterations: int
    converged: bool
    grad_max: float
    loss: float


def fit_logistic_regression(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    num_classes: int,
    weight_decay: float,
    max_iter: int = 100,
    lr: float = 1.0,
    tolerance_grad: float = 1e-6,
    init: LinearModel | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[LinearModel, FitInfo]:
    """Minimise the objective of the module docstring on (x, y); returns (model, FitInfo).

    ``x`` is standardised with its own statistics (or the precomputed ``stats`` = (mean, std)
    of this same ``x``), stored in the model. ``init`` warm-starts from another fitted model
    (re-expressed exactly in this standardisation); zeros otherwise. L-BFGS stops at
    ``max |grad| <= tolerance_grad``, at a flat objective (float32 precision) or at the caps
    ``max_iter`` iterations / ``2 * max_iter`` evaluations; stopping at a cap warns (an
    unconverged probe).
    """
    x = _as_float(x)
    y = torch.as_tensor(y if isinstance(y, torch.Tensor) else np.asarray(y), dtype=torch.long)
    y = y.to(x.device)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x (N, D) and y (N,) expected, got {tuple(x.shape)}, {tuple(y.shape)}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    mean, std = stats if stats is not None else standardization(x)
    xs = (x - mean) / std
    if init is None:
        w = torch.zeros(num_classes, x.shape[1], device=x.device)
        b = torch.zeros(num_classes, device=x.device)
    else:
        w, b = init.reparametrize(mean, std)
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=lr,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        history_size=100,  # cheap (C x D parameters) and halves iterations on real features
        tolerance_grad=tolerance_grad,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(F.linear(xs, w, b), y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    state = opt.state[w]
    n_iter, n_eval = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
    final = closure()  # loss and gradient at the returned point
    if not math.isfinite(final.item()):
        raise FloatingPointError(f"linear probe diverged (weight_decay={weight_decay})")
    grad_max = max(float(w.grad.abs().max()), float(b.grad.abs().max()))
    converged = grad_max <= tolerance_grad or (n_iter < max_iter and n_eval < 2 * max_iter)
    if not converged:
        warnings.warn(
            f"linear probe (weight_decay={weight_decay:g}): L-BFGS stopped at its cap "
            f"({n_iter} iterations, {n_eval} evaluations; max_iter={max_iter}) before converging "
            f"(max |grad| {grad_max:.2g}); raise probe.linear.max_iter for exact results",
            stacklevel=2,
        )
    info = FitInfo(n_iter, converged, grad_max, final.item())
    return LinearModel(w.detach().clone(), b.detach().clone(), mean, std), info


def linear_probe(
    train_x: torch.Tensor | np.ndarray,
    train_y: np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    weight_decays: Sequence[float] = (0.0, 1e-6, 1e-5, 1e-4, 1e-3),
    val_fraction: float = 0.1,
    max_iter: int = 100,
    lr: float = 1.0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> LinearProbeResult:
    """Run the whole protocol of the module docstring; see :class:`LinearProbeResult`.

    ``device`` (default: CPU) is where the features and the fits live; results come back on CPU.
    """
    if not weight_decays:
        raise ValueError("weight_decays must list at least one value")
    device = torch.device(device or "cpu")
    train_x, test_x = _as_float(train_x).to(device), _as_float(test_x).to(device)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    fit_idx, val_idx = validation_split(train_y, val_fraction, seed)
    fit_i, val_i = torch.from_numpy(fit_idx).to(device), torch.from_numpy(val_idx).to(device)
    val_y = torch.from_numpy(train_y[val_idx]).long().to(device)

    val_top1: dict[float, float] = {}
    models: dict[float, LinearModel] = {}
    fits: dict[str, FitInfo] = {}
    fit_x, fit_y, val_x = train_x[fit_i], train_y[fit_idx], train_x[val_i]
    fit_stats = standardization(fit_x)  # shared by the whole weight-decay grid
    prev = None
    # Strongest decay first, each fit warm-started from the previous one (a regularisation
    # path): the well-conditioned problems converge fast and seed the harder ones.
    for wd in sorted({float(v) for v in weight_decays}, reverse=True):
        prev, info = fit_logistic_regression(
            fit_x, fit_y, num_classes, wd, max_iter, lr, init=prev, stats=fit_stats
        )
        models[wd] = prev
        with torch.no_grad():
            val_top1[wd] = topk_accuracy(prev.logits(val_x), val_y, (1,))[1]
        fits[f"wd{wd:g}"] = info
    # Ties go to the larger weight decay: the simpler model at equal validation accuracy.
    best = max(val_top1, key=lambda wd: (val_top1[wd], wd))

    model, fits["refit"] = fit_logistic_regression(
        train_x, train_y, num_classes, best, max_iter, lr, init=models[best]
    )
    with torch.no_grad():
        logits = model.logits(test_x)
    acc = topk_accuracy(logits, torch.from_numpy(test_y).long().to(device), (1, 5))
    logits = logits.cpu()
    return LinearProbeResult(best, val_top1, acc[1], acc[5], logits, model, fits)
