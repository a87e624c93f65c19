"""Every method behind the common interface; VSSL's objective, teacher and switches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vssl import methods
from vssl.config import KNOWN_METHODS, load_params
from vssl.losses import cosine_kl, cosine_nll, gaussian_kl, gaussian_nll
from vssl.methods.vssl import Gaussian, vssl_pair_terms
from vssl.models import build_backbone

ROOT = Path(__file__).resolve().parents[1]
B, C, S = 16, 3, 16
H = 32  # hidden / embedding widths of the tiny heads

TINY = {
    "vssl": dict(proj_hidden_dim=H, latent_dim=16, pred_hidden_dim=H),
    "byol": dict(proj_hidden_dim=H, proj_output_dim=16, pred_hidden_dim=H),
    "mocov3": dict(proj_hidden_dim=H, proj_output_dim=16, pred_hidden_dim=H),
    "simclr": dict(proj_hidden_dim=H, proj_output_dim=16),
    "barlow_twins": dict(proj_hidden_dim=H, proj_output_dim=H),
    "random": {},
}
TRAINABLE = [m for m in TINY if m != "random"]


def make(name: str, seed: int = 0, **over) -> methods.Method:
    torch.manual_seed(seed)
    backbone, dim = build_backbone("resnet18", width=4, in_channels=C, image_size=S)
    return methods.build(name, {**TINY[name], **over}, backbone, dim)


def views(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, S, S, generator=g)
    return x + 0.1 * torch.randn(x.shape, generator=g), x.flip(-1)


def test_registry_matches_config_and_rejects_unknown():
    assert set(methods.METHODS) == set(KNOWN_METHODS)
    backbone, dim = build_backbone("resnet18", width=4)
    with pytest.raises(ValueError, match="known: vssl, byol, mocov3, simclr, barlow_twins, random"):
        methods.build("dino", {}, backbone, dim)
    with pytest.raises(ValueError, match="unknown config keys \\['latent'\\]"):
        methods.build("vssl", {"latent": 3}, backbone, dim)
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'; known: gaussian, cosine"):
        methods.build("vssl", {"likelihood": "laplace"}, backbone, dim)


def test_build_accepts_every_method_cfg_from_params():
    params = load_params(ROOT / "params.yaml", profile="smoke")
    for name in KNOWN_METHODS:
        backbone, dim = build_backbone("resnet18", width=2)
        m = methods.build(name, params.method_cfg(name), backbone, dim)
        assert m.name == name and m.backbone is backbone


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_step_interface(name):
    m = make(name)
    x1, x2 = views()
    out = m(x1, x2)  # forward is training_step (DDP calls forward)
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert out["feats"].shape == (2 * B, m.feature_dim) and not out["feats"].requires_grad
    assert out["z"].shape[0] == 2 * B and not out["z"].requires_grad
    for k, v in out.items():
        if k not in ("loss", "feats", "z"):
            assert v.dim() == 0 and not v.requires_grad, k
    # feats are the student backbone's features of [x1; x2] (same BN batch statistics per view)
    with torch.no_grad():
        ref = torch.cat([m.backbone(x1), m.backbone(x2)])
    torch.testing.assert_close(out["feats"], ref)
    if name == "vssl":
        assert {"likelihood", "kl", "sigma2_student", "sigma2_teacher"} <= set(out)
    tau = m.momentum_update(0, 10)
    assert tau == (0.99 if name in ("vssl", "byol", "mocov3") else None)


@pytest.mark.parametrize("name", TRAINABLE)
def test_optimisation_reduces_loss_without_collapse(name):
    m = make(name)
    x1, x2 = views()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)

    def loss_at_fixed_noise() -> float:
        torch.manual_seed(123)  # VSSL samples z: compare at the same eps
        return m.training_step(x1, x2)["loss"].item()

    before = loss_at_fixed_noise()
    steps = 8
    for step in range(steps):
        out = m.training_step(x1, x2)
        opt.zero_grad()
        out["loss"].backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        opt.step()
        m.momentum_update(step, steps)
    after = loss_at_fixed_noise()
    assert after < before, (before, after)
    # different images keep different embeddings: not all on one point
    z = F.normalize(m.training_step(x1, x2)["z"][:B], dim=-1)
    assert torch.pdist(z).mean() > 0.2
    assert z.std(dim=0).mean() > 1e-3


@pytest.mark.parametrize("name", ["vssl", "byol", "mocov3"])
def test_no_gradient_reaches_the_teacher(name):
    m = make(name)
    x1, x2 = views()
    m.training_step(x1, x2)["loss"].backward()
    teacher = [p for n, p in m.named_parameters() if n.startswith("teacher_")]
    student = [p for n, p in m.named_parameters() if not n.startswith("teacher_")]
    assert teacher and student
    assert all(not p.requires_grad and p.grad is None for p in teacher)
    assert all(p.requires_grad for p in student)
    assert sum(p.grad.abs().sum() for p in student if p.grad is not None) > 0
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in teacher}


@pytest.mark.parametrize("name", ["vssl", "byol", "mocov3"])
def test_momentum_update_moves_teacher_towards_student(name):
    m = make(name)
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(0.5)
    s = m.backbone.conv1.weight.detach().clone()
    t0 = m.teacher_backbone.conv1.weight.detach().clone()
    tau = m.momentum_update(5, 10)
    assert 0.99 < tau < 1.0
    torch.testing.assert_close(m.teacher_backbone.conv1.weight, tau * t0 + (1 - tau) * s)
    assert m.momentum_update(10, 10) == 1.0
    # student and teacher start from the same weights
    fresh = make(name)
    assert torch.equal(fresh.backbone.conv1.weight, fresh.teacher_backbone.conv1.weight)


@pytest.mark.parametrize("name", ["vssl", "byol", "mocov3"])
def test_momentum_update_reaches_every_teacher_parameter(name):
    """Every `teacher_<module>` is the EMA of `<module>`, parameter by parameter (a pair left
    out of momentum_pairs, e.g. VSSL's Gaussian head, would freeze that part of the prior)."""
    m = make(name)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    teachers = [k for k in before if k.startswith("teacher_")]
    assert teachers
    tau = m.momentum_update(0, 10)
    assert tau < 1.0
    after = dict(m.named_parameters())
    for k in teachers:
        student = k.removeprefix("teacher_")
        expected = tau * before[k] + (1 - tau) * before[student]
        torch.testing.assert_close(after[k].detach(), expected, msg=k)


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"likelihood": "gaussian", "kl": "gaussian"},
        {"prior": "standard_normal"},
        {"kl": "none", "predictor": False},
    ],
)
def test_vssl_loss_symmetric_under_swapping_views(over):
    m = make("vssl", sample=False, **over)
    x1, x2 = views()
    a = m.training_step(x1, x2)
    b = m.training_step(x2, x1)
    for k in ("loss", "likelihood", "kl"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_vssl_objective_is_the_mean_of_both_ordered_pairs():
    g = torch.Generator().manual_seed(0)
    s1, s2, t1, t2 = (
        Gaussian(torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)) for _ in range(4)
    )
    m = make("vssl", sample=False, beta=0.5, likelihood="gaussian", kl="gaussian")
    out = m.objective(s1, s2, t1, t2)
    # default reading: the teacher's mean under the student's variance, nats per coordinate
    nll = 0.5 * (
        gaussian_nll(t1.mu, s2.mu, s2.logvar, "mean").mean()
        + gaussian_nll(t2.mu, s1.mu, s1.logvar, "mean").mean()
    )
    kl = 0.5 * (gaussian_kl(*s2, *t1, "mean").mean() + gaussian_kl(*s1, *t2, "mean").mean())
    torch.testing.assert_close(out["likelihood"], nll)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], nll + 0.5 * kl)
    swapped = m.objective(s2, s1, t2, t1)
    torch.testing.assert_close(swapped["loss"], out["loss"])


def test_vssl_pair_terms_switches():
    g = torch.Generator().manual_seed(1)
    q = Gaussian(torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g))
    p = Gaussian(torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g))
    nll, kl = vssl_pair_terms(q, p, "cosine", "cosine", sample=False)
    torch.testing.assert_close(nll, cosine_nll(p.mu, q.mu, q.logvar, "mean", isotropic=False))
    torch.testing.assert_close(kl, cosine_kl(*q, *p, "mean", isotropic=False))
    iso = vssl_pair_terms(q, p, "cosine", "cosine", sample=False, direction_variance="isotropic")
    torch.testing.assert_close(iso[0], cosine_nll(p.mu, q.mu, q.logvar, "mean"))
    # the 2025 reading: the teacher's variance scales the likelihood, terms summed over d
    old = dict(likelihood_variance="teacher", reduction="sum", direction_variance="isotropic")
    nll_o, kl_o = vssl_pair_terms(q, p, "cosine", "cosine", sample=False, **old)
    torch.testing.assert_close(nll_o, cosine_nll(q.mu, *p))
    torch.testing.assert_close(kl_o, cosine_kl(*q, *p))
    # sample: z = mu + sigma * eps with eps from the global generator
    torch.manual_seed(7)
    nll_s, _ = vssl_pair_terms(q, p, "gaussian", "gaussian", sample=True)
    torch.manual_seed(7)
    z = q.mu + (0.5 * q.logvar).exp() * torch.randn_like(q.mu)
    torch.testing.assert_close(nll_s, gaussian_nll(p.mu, z, q.logvar, "mean"))
    # standard-normal prior in the KL; the likelihood still targets the teacher
    nll_n, kl_n = vssl_pair_terms(
        q, p, "gaussian", "gaussian", sample=False, prior="standard_normal", **old
    )
    torch.testing.assert_close(kl_n, gaussian_kl(*q, torch.zeros(6, 4), torch.zeros(6, 4)))
    torch.testing.assert_close(nll_n, gaussian_nll(q.mu, *p))
    _, kl_none = vssl_pair_terms(q, p, "cosine", "none")
    assert torch.count_nonzero(kl_none) == 0


@pytest.mark.parametrize("likelihood", ["cosine", "gaussian"])
def test_the_likelihood_trains_the_posterior_through_the_sample(likelihood):
    """The reparameterised sample z = mu + sigma * eps carries the likelihood's gradient to the
    student's mean and log-variance (a detached sample gives the same value and no gradient)."""
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(6, 4, generator=g, requires_grad=True)
    lv = (0.3 * torch.randn(6, 4, generator=g)).requires_grad_()
    p = Gaussian(torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g))
    torch.manual_seed(7)
    nll, _ = vssl_pair_terms(Gaussian(mu, lv), p, likelihood, "none", sample=True)
    got = torch.autograd.grad(nll.sum(), (mu, lv))
    torch.manual_seed(7)
    z = mu + (0.5 * lv).exp() * torch.randn_like(mu)
    if likelihood == "cosine":
        ref = cosine_nll(p.mu, z, lv, "mean", isotropic=False)
    else:
        ref = gaussian_nll(p.mu, z, lv, "mean")
    want = torch.autograd.grad(ref.sum(), (mu, lv))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert got[0].abs().sum() > 0


def test_vssl_head_input_projector_shares_the_teachers_input_space():
    # With head_input="projector" the student's and teacher's Gaussian heads are the same map of
    # the same kind of input: at initialisation (teacher == student) the student's log-variance
    # of a view equals the teacher's of the same view, and the predictor maps the mean only.
    m = make("vssl", sample=False)
    x1, _ = views()
    m.eval()
    feats, q, emb = m.encode_student(x1)
    t = m.encode_teacher(x1)
    torch.testing.assert_close(q.logvar, t.logvar)
    torch.testing.assert_close(emb, t.mu)
    torch.testing.assert_close(q.mu, m.predictor(emb))
    old = make("vssl", sample=False, head_input="predictor")
    old.eval()
    _, q_old, emb_old = old.encode_student(x1)
    assert torch.equal(emb_old, q_old.mu)
    assert not torch.allclose(q_old.logvar, old.encode_teacher(x1).logvar)


def test_vssl_variance_input_backbone_reads_the_features():
    # variance_input="backbone": the log-variance is the head's bounded map of the backbone's
    # features (student and teacher alike); the mean path is untouched.
    m = make("vssl", sample=False, variance_input="backbone")
    head = make("vssl", sample=False)
    assert m.head.logvar.in_features == m.feature_dim
    x1, _ = views()
    m.eval()
    feats, q, emb = m.encode_student(x1)
    lo, hi = m.logvar_bounds
    expected = lo + (hi - lo) * torch.sigmoid(m.head.logvar(feats))
    torch.testing.assert_close(q.logvar, expected)
    torch.testing.assert_close(m.encode_teacher(x1).logvar, expected)  # teacher == student at init
    head.eval()
    torch.testing.assert_close(emb, head.encode_student(x1)[2])  # same seed: same mean path
    out = make("vssl", variance_input="backbone").training_step(*views())
    out["loss"].backward()
    with pytest.raises(ValueError, match="variance_input"):
        make("vssl", variance_input="projector")


def test_vssl_switches_build_the_documented_modules():
    assert isinstance(make("vssl", predictor=False).predictor, torch.nn.Identity)
    m = make("vssl")
    assert not hasattr(m, "teacher_predictor")  # the teacher has no predictor (as in BYOL)
    x1, x2 = views()
    out = make("vssl", kl="none").training_step(x1, x2)
    assert out["kl"].item() == 0.0 and out["loss"].item() == pytest.approx(out["likelihood"].item())


def test_vssl_sampling_is_seeded_and_sample_false_is_deterministic():
    x1, x2 = views()
    m = make("vssl")
    torch.manual_seed(5)
    a = m.training_step(x1, x2)["loss"]
    torch.manual_seed(5)
    b = m.training_step(x1, x2)["loss"]
    assert torch.equal(a, b)
    c = m.training_step(x1, x2)["loss"]
    assert not torch.equal(a, c)
    d = make("vssl", sample=False)
    assert torch.equal(d.training_step(x1, x2)["loss"], d.training_step(x1, x2)["loss"])


def test_vssl_gaussian_is_the_students_posterior_and_prior_the_teachers_in_eval_mode():
    m = make("vssl", logvar_min=-6.0, logvar_max=2.0)
    x1, x2 = views()
    m.training_step(x1, x2)  # BN running stats move in train mode
    mu, logvar = m.gaussian(x1)
    assert mu.shape == logvar.shape == (B, 16) and not mu.requires_grad
    assert logvar.min() >= -6.0 and logvar.max() <= 2.0
    assert m.backbone.training and m.teacher_backbone.training  # modes restored
    # eval mode: each sample's output does not depend on the rest of the batch
    torch.testing.assert_close(m.gaussian(x1[:3])[0], mu[:3], rtol=1e-4, atol=1e-5)
    m.eval()
    q = m.encode_student(x1)[1]
    t = m.encode_teacher(x1)
    m.train()
    torch.testing.assert_close(mu, q.mu)
    torch.testing.assert_close(logvar, q.logvar)
    mu_t, logvar_t = m.prior(x1)
    torch.testing.assert_close(mu_t, t.mu)
    torch.testing.assert_close(logvar_t, t.logvar)
    # each reads its own network: perturbing the student's head moves the posterior only
    with torch.no_grad():
        for p in m.head.parameters():
            p.add_(1.0)
    assert not torch.allclose(m.gaussian(x1)[1], logvar)
    torch.testing.assert_close(m.prior(x1)[1], logvar_t)
    assert methods.build is not None and make("byol").gaussian(x1) is None


def test_random_method_is_not_trainable():
    m = make("random")
    assert m.trainable is False
    assert not [p for p in m.parameters() if p.requires_grad]
    assert m.momentum_update(0, 1) is None and m.gaussian(views()[0]) is None
    with pytest.raises(RuntimeError, match="not trained"):
        m.training_step(*views())
    assert m.backbone(views()[0]).shape == (B, m.feature_dim)


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_step_under_bf16_autocast(name):
    # The engine trains in bf16 on GPUs; the loss terms must still come out float32 and finite.
    m = make(name)
    x1, x2 = views()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(x1, x2)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
