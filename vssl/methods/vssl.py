"""VSSL: Variational Self-Supervised Learning (Yavuz & Yanikoglu, 2025).

Networks (``head_input="projector"``, the default)::

    student:  x -> backbone -> projector -> GaussianHead -> (m_s, logvar_s);  mu_s = predictor(m_s)
    teacher:  x -> backbone' -> projector' -> GaussianHead' -> (mu_t, logvar_t)     (EMA, no grad)

For the ordered pair (student sees x_a, teacher sees x_b), with ``sigma^2 = exp(logvar)``::

    q(z | x_a) = N(mu_s(x_a), diag sigma_s^2(x_a))          posterior (student)
    p(z | x_b) = N(mu_t(x_b), diag sigma_t^2(x_b))          data-dependent prior (teacher)
    z          = mu_s + sigma_s * eps,  eps ~ N(0, I)       (z = mu_s with sample=false)
    L(a, b)    = mean_i [ -log p(mu_t(x_b) | z)  +  beta * KL(q || p) ]
    L          = 0.5 * (L(a=x2, b=x1) + L(a=x1, b=x2))

The likelihood is the cross-view denoising term: the teacher's embedding of the other view
explained by the student's sample, under the student's variances
(``likelihood_variance="student"``). With ``u(a) = sqrt(d) a / |a|`` the direction of ``a`` on
the sphere of radius sqrt(d) (the cosine forms)::

    cosine:    -log p = mean_j 0.5 [ (u(mu_t)_j - u(z)_j)^2 / sigma_s,j^2 + log(2 pi sigma_s,j^2) ]
    gaussian:  -log p = mean_j 0.5 [ (mu_t,j - z_j)^2 / sigma_s,j^2 + log(2 pi sigma_s,j^2) ]

and the KL is closed form::

    cosine:    KL = mean_j 0.5 [ log(sigma_t,j^2 / sigma_s,j^2) + (sigma_s,j^2
                                 + (u(mu_s)_j - u(mu_t)_j)^2) / sigma_t,j^2 - 1 ]
    gaussian:  the same with mu_s, mu_t in place of u(mu_s), u(mu_t)

With one variance per sample (``direction_variance="isotropic"``) the cosine mean terms are
``(1 - cos) / v``, ``v = mean_j sigma_j^2``.

All terms are nats per latent coordinate (``reduction="mean"``; the cosine terms are the
Gaussian terms of the directions scaled to radius sqrt(d)). The switches ``head_input``,
``likelihood_variance``, ``reduction`` and ``direction_variance`` are this implementation's
fixes of the 2025 reading, whose form (``"predictor"``, ``"teacher"``, ``"sum"``,
``"isotropic"``) collapses at the paper's learning rate; docs/method.md ("Why the first
reading collapsed") has the measurements. See :mod:`vssl.losses` for each term.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

import torch
import torch.nn as nn
from torch import Tensor

from vssl.losses import cosine_kl, cosine_nll, gaussian_kl, gaussian_nll
from vssl.losses._reduce import REDUCTIONS
from vssl.methods.base import MomentumMethod
from vssl.models.ema import make_teacher
from vssl.models.heads import MLP, GaussianHead

LIKELIHOODS = {"gaussian": gaussian_nll, "cosine": cosine_nll}
KLS = {"gaussian": gaussian_kl, "cosine": cosine_kl}
HEAD_INPUTS = ("projector", "predictor")
VARIANCE_INPUTS = ("head", "backbone")
LIKELIHOOD_VARIANCES = ("student", "teacher")
PRIORS = ("teacher", "standard_normal")
DIRECTION_VARIANCES = ("per_coordinate", "isotropic")


class Gaussian(NamedTuple):
    """A batch of diagonal Gaussians: ``mu`` and ``logvar``, each (B, d)."""

    mu: Tensor
    logvar: Tensor


def vssl_pair_terms(
    q: Gaussian,
    p: Gaussian,
    likelihood: Literal["gaussian", "cosine"] = "cosine",
    kl: Literal["gaussian", "cosine", "none"] = "cosine",
    sample: bool = True,
    prior: Literal["teacher", "standard_normal"] = "teacher",
    likelihood_variance: Literal["student", "teacher"] = "student",
    reduction: Literal["sum", "mean"] = "mean",
    direction_variance: Literal["per_coordinate", "isotropic"] = "per_coordinate",
) -> tuple[Tensor, Tensor]:
    """Per-sample ``(likelihood, KL)`` terms, each (B,), for one ordered pair of views.

    ``q`` is the student's posterior on view a, ``p`` the teacher's Gaussian on view b::

        z          = q.mu + exp(q.logvar / 2) * eps     (q.mu if not sample)
        likelihood = -log N(p.mu; z, diag q.var)        likelihood_variance="student"
                   = -log N(z; p.mu, diag p.var)        likelihood_variance="teacher"
        KL         = KL(q || prior)                     prior = p, or N(0, I); 0 for kl="none"

    (cosine forms with ``likelihood="cosine"`` / ``kl="cosine"``); ``reduction`` combines the
    per-coordinate terms (``"mean"``: nats per coordinate, ``"sum"``: per sample). Computed in
    float32 (the terms exponentiate log-variances).
    """
    mu_s, lv_s = q.mu.float(), q.logvar.float()
    mu_t, lv_t = p.mu.float(), p.logvar.float()
    z = mu_s + (0.5 * lv_s).exp() * torch.randn_like(mu_s) if sample else mu_s
    lik = dict(reduction=reduction)
    if likelihood == "cosine":
        lik["isotropic"] = direction_variance == "isotropic"
    if likelihood_variance == "student":
        nll = LIKELIHOODS[likelihood](mu_t, z, lv_s, **lik)
    else:
        nll = LIKELIHOODS[likelihood](z, mu_t, lv_t, **lik)
    if kl == "none":
        return nll, torch.zeros_like(nll)
    if prior == "standard_normal":
        mu_t, lv_t = torch.zeros_like(mu_s), torch.zeros_like(lv_s)
    div = dict(reduction=reduction)
    if kl == "cosine":
        div["isotropic"] = direction_variance == "isotropic"
    return nll, KLS[kl](mu_s, lv_s, mu_t, lv_t, **div)


class VSSL(MomentumMethod):
    """VSSL with an EMA teacher prior; ``training_step`` logs likelihood, kl, sigma^2 terms.

    ``loss = 0.5 * sum_{(a,b) in {(2,1),(1,2)}} mean_i [ likelihood_i(a,b) + beta * KL_i(a,b) ]``.
    """

    name = "vssl"
    diagnostics = ("sigma2_student", "sigma2_teacher", "logvar_student", "logvar_teacher")

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        proj_hidden_dim: int = 4096,
        latent_dim: int = 256,
        pred_hidden_dim: int = 4096,
        likelihood: Literal["gaussian", "cosine"] = "cosine",
        kl: Literal["gaussian", "cosine", "none"] = "cosine",
        beta: float = 1.0,
        sample: bool = True,
        predictor: bool = True,
        prior: Literal["teacher", "standard_normal"] = "teacher",
        head_input: Literal["projector", "predictor"] = "projector",
        variance_input: Literal["head", "backbone"] = "head",
        likelihood_variance: Literal["student", "teacher"] = "student",
        reduction: Literal["sum", "mean"] = "mean",
        direction_variance: Literal["per_coordinate", "isotropic"] = "per_coordinate",
        tau_base: float = 0.99,
        tau_final: float = 1.0,
        logvar_min: float = -8.0,
        logvar_max: float = 4.0,
    ) -> None:
        super().__init__(backbone, feature_dim, tau_base, tau_final)
        for key, value, known in [
            ("likelihood", likelihood, tuple(LIKELIHOODS)),
            ("kl", kl, (*KLS, "none")),
            ("prior", prior, PRIORS),
            ("head_input", head_input, HEAD_INPUTS),
            ("variance_input", variance_input, VARIANCE_INPUTS),
            ("likelihood_variance", likelihood_variance, LIKELIHOOD_VARIANCES),
            ("reduction", reduction, REDUCTIONS),
            ("direction_variance", direction_variance, DIRECTION_VARIANCES),
        ]:
            if value not in known:
                raise ValueError(f"vssl: unknown {key} {value!r}; known: {', '.join(known)}")
        self.terms = dict(
            likelihood=likelihood,
            kl=kl,
            sample=bool(sample),
            prior=prior,
            likelihood_variance=likelihood_variance,
            reduction=reduction,
            direction_variance=direction_variance,
        )
        self.beta = float(beta)
        self.head_input = head_input
        self.variance_input = variance_input
        self.projector = MLP(feature_dim, proj_hidden_dim, latent_dim)
        self.predictor = (
            MLP(latent_dim, pred_hidden_dim, latent_dim) if predictor else nn.Identity()
        )
        var_in = feature_dim if variance_input == "backbone" else None
        self.head = GaussianHead(latent_dim, latent_dim, logvar_min, logvar_max, var_in)
        self.teacher_backbone = make_teacher(self.backbone)
        self.teacher_projector = make_teacher(self.projector)
        self.teacher_head = make_teacher(self.head)

    @property
    def logvar_bounds(self) -> tuple[float, float]:
        return self.head.logvar_min, self.head.logvar_max

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [
            (self.backbone, self.teacher_backbone),
            (self.projector, self.teacher_projector),
            (self.head, self.teacher_head),
        ]

    def encode_student(self, x: Tensor) -> tuple[Tensor, Gaussian, Tensor]:
        """``(features, posterior q, embedding)``.

        ``head_input="projector"``: the Gaussian head reads the projector's output, as the
        teacher's copy of it does, and the predictor maps its mean: ``q = N(predictor(m), s^2)``
        with ``(m, log s^2) = head(projector(f))``; the embedding is ``m``, in the teacher's space.
        ``"predictor"`` (the 2025 reading): ``q = head(predictor(projector(f)))``, embedding
        ``q.mu``. ``variance_input="backbone"``: the log-variance reads ``f`` itself.
        """
        feats = self.backbone(x)
        h = self.projector(feats)
        v = feats if self.variance_input == "backbone" else None
        if self.head_input == "predictor":
            q = Gaussian(*self.head(self.predictor(h), v))
            return feats, q, q.mu
        m, logvar = self.head(h, v)
        return feats, Gaussian(self.predictor(m), logvar), m

    @torch.no_grad()
    def encode_teacher(self, x: Tensor) -> Gaussian:
        """The teacher's prior ``p = (mu_t, logvar_t)`` for ``x`` (no gradient; current mode)."""
        feats = self.teacher_backbone(x)
        v = feats if self.variance_input == "backbone" else None
        return Gaussian(*self.teacher_head(self.teacher_projector(feats), v))

    def objective(
        self, s1: Gaussian, s2: Gaussian, t1: Gaussian, t2: Gaussian
    ) -> dict[str, Tensor]:
        """Symmetrised loss from students ``s1, s2`` and teachers ``t1, t2`` of views 1 and 2.

        ``loss = 0.5 * (L(a=x2, b=x1) + L(a=x1, b=x2))``, with
        ``L(a, b) = mean_i [likelihood_i + beta * KL_i]``; also returns ``likelihood`` and ``kl``
        (symmetrised batch means).
        """
        nll_21, kl_21 = vssl_pair_terms(s2, t1, **self.terms)
        nll_12, kl_12 = vssl_pair_terms(s1, t2, **self.terms)
        nll = 0.5 * (nll_21.mean() + nll_12.mean())
        kl = 0.5 * (kl_21.mean() + kl_12.mean())
        return {"loss": nll + self.beta * kl, "likelihood": nll, "kl": kl}

    def training_step(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        f1, s1, e1 = self.encode_student(x1)
        f2, s2, e2 = self.encode_student(x2)
        t1, t2 = self.encode_teacher(x1), self.encode_teacher(x2)
        out = self.objective(s1, s2, t1, t2)
        out["likelihood"] = out["likelihood"].detach()
        out["kl"] = out["kl"].detach()
        lv_s = torch.cat([s1.logvar, s2.logvar]).detach().float()
        lv_t = torch.cat([t1.logvar, t2.logvar]).float()
        out["sigma2_student"] = lv_s.exp().mean()
        out["sigma2_teacher"] = lv_t.exp().mean()
        # mean log-variances: where they sit in [logvar_min, logvar_max] (the collapse guard)
        out["logvar_student"] = lv_s.mean()
        out["logvar_teacher"] = lv_t.mean()
        out["feats"] = torch.cat([f1, f2]).detach()
        out["z"] = torch.cat([e1, e2]).detach()
        return out

    @torch.no_grad()
    def gaussian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior ``q(z | x) = (mu_s, logvar_s)``, the student's, in eval mode (BatchNorm
        running statistics): what the uncertainty report scores. The student's variance is the
        one the likelihood fits to the cross-view error; the teacher's (:meth:`prior`) ranks the
        probe's errors worse (docs/benchmarks.md, "What VSSL's variance knows")."""
        with _eval_mode(self.backbone, self.projector, self.head, self.predictor):
            return tuple(self.encode_student(x)[1])  # type: ignore[return-value]

    @torch.no_grad()
    def prior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The teacher's ``(mu_t, logvar_t)`` for ``x`` in eval mode: the data-dependent prior."""
        with _eval_mode(self.teacher_backbone, self.teacher_projector, self.teacher_head):
            return tuple(self.encode_teacher(x))  # type: ignore[return-value]


@contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block, then restore each one's mode."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)
