"""The VSSL loss terms against torch.distributions, and the baselines' losses against their
definitions written out the slow way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from vssl.losses import (
    barlow_twins_loss,
    cosine_kl,
    cosine_nll,
    gaussian_kl,
    gaussian_nll,
    infonce,
    negative_cosine,
    ntxent,
)

B, D = 7, 5


def _gauss(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(B, D, generator=g, dtype=dtype)
    logvar = torch.randn(B, D, generator=g, dtype=dtype).clamp(-3, 3)
    return mu, logvar


def _normal(mu, logvar):
    return Independent(Normal(mu, (0.5 * logvar).exp()), 1)


def _iso(logvar_row: torch.Tensor) -> torch.Tensor:
    """An isotropic log-variance (B, D): one value per sample."""
    return logvar_row[:, :1].expand(B, D).clone()


def test_gaussian_kl_matches_torch_distributions():
    mu_q, lv_q = _gauss(0)
    mu_p, lv_p = _gauss(1)
    ours = gaussian_kl(mu_q, lv_q, mu_p, lv_p)
    ref = kl_divergence(_normal(mu_q, lv_q), _normal(mu_p, lv_p))
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_gaussian_nll_matches_torch_distributions():
    z, _ = _gauss(2)
    mu_p, lv_p = _gauss(3)
    ours = gaussian_nll(z, mu_p, lv_p)
    ref = -_normal(mu_p, lv_p).log_prob(z)
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_cosine_nll_is_gaussian_nll_of_unit_vectors_with_isotropic_variance():
    # For |x| = |mu| = 1 and sigma_j^2 = v: ||x - mu||^2 / (2v) = (1 - cos) / v, so the cosine
    # likelihood (reduction "sum") is the Gaussian NLL of the directions, normaliser included.
    z, _ = _gauss(4)
    mu_p, lv = _gauss(5)
    lv_p = _iso(lv)
    zh, mh = F.normalize(z, dim=-1), F.normalize(mu_p, dim=-1)
    ref = -_normal(mh, lv_p).log_prob(zh)
    ours = cosine_nll(z, mu_p, lv_p)
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_cosine_terms_with_mean_reduction_are_per_coordinate_terms_on_the_sqrt_d_sphere():
    # reduction "mean": the Gaussian terms of the directions scaled to radius sqrt(d), / d.
    z, lv_q = _gauss(21)
    mu_p, lv = _gauss(22)
    lv_p = _iso(lv)
    r = D**0.5
    zh, mh = r * F.normalize(z, dim=-1), r * F.normalize(mu_p, dim=-1)
    ref_nll = -_normal(mh, lv_p).log_prob(zh) / D
    torch.testing.assert_close(
        cosine_nll(z, mu_p, lv_p, reduction="mean"), ref_nll, atol=1e-6, rtol=0
    )
    ref_kl = kl_divergence(_normal(zh, lv_q), _normal(mh, lv_p)) / D
    torch.testing.assert_close(
        cosine_kl(z, lv_q, mu_p, lv_p, reduction="mean"), ref_kl, atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_coordinate_cosine_terms_are_gaussian_terms_of_the_directions(reduction):
    # isotropic=False: per-coordinate variances on the directions (radius 1 for "sum",
    # sqrt(d) for "mean"); equal to the isotropic forms when the variances are isotropic.
    x, lv_q = _gauss(26)
    mu, lv_p = _gauss(27)
    r = 1.0 if reduction == "sum" else D**0.5
    xu, mu_u = r * F.normalize(x, dim=-1), r * F.normalize(mu, dim=-1)
    torch.testing.assert_close(
        cosine_nll(x, mu, lv_p, reduction, isotropic=False), gaussian_nll(xu, mu_u, lv_p, reduction)
    )
    torch.testing.assert_close(
        cosine_kl(x, lv_q, mu, lv_p, reduction, isotropic=False),
        gaussian_kl(xu, lv_q, mu_u, lv_p, reduction),
    )
    iso = _iso(lv_p)
    torch.testing.assert_close(
        cosine_nll(x, mu, iso, reduction, isotropic=False), cosine_nll(x, mu, iso, reduction)
    )
    torch.testing.assert_close(
        cosine_kl(x, lv_q, mu, iso, reduction, isotropic=False),
        cosine_kl(x, lv_q, mu, iso, reduction),
    )


@pytest.mark.parametrize("fn", [gaussian_nll, gaussian_kl])
def test_gaussian_terms_mean_reduction_is_the_sum_over_d(fn):
    a, lv_a = _gauss(23)
    b, lv_b = _gauss(24)
    args = (a, b, lv_b) if fn is gaussian_nll else (a, lv_a, b, lv_b)
    torch.testing.assert_close(fn(*args, reduction="mean") * D, fn(*args), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="reduction"):
        fn(*args, reduction="max")


def test_cosine_nll_normaliser_bounds_a_learned_variance():
    # With the variance as a free parameter the term has its minimum at v = 2 (1 - cos) / c
    # (c = d for "sum", 1 for "mean") instead of decreasing forever as v grows.
    g = torch.Generator().manual_seed(25)
    x, mu = torch.randn(1, 64, generator=g), torch.randn(1, 64, generator=g)
    one_minus_cos = 1 - F.cosine_similarity(x, mu).item()
    for reduction, c in (("sum", 64), ("mean", 1)):
        grid = torch.linspace(-12, 3, 3001)
        vals = torch.stack(
            [cosine_nll(x, mu, torch.full((1, 64), float(v)), reduction) for v in grid]
        )
        best = grid[vals.argmin()].exp().item()
        assert best == pytest.approx(2 * one_minus_cos / c, rel=0.02)


def test_cosine_kl_is_gaussian_kl_of_unit_means_with_isotropic_prior():
    mu_q, lv_q = _gauss(6)
    mu_p, lv = _gauss(7)
    lv_p = _iso(lv)
    ref = kl_divergence(
        _normal(F.normalize(mu_q, dim=-1), lv_q), _normal(F.normalize(mu_p, dim=-1), lv_p)
    )
    ours = cosine_kl(mu_q, lv_q, mu_p, lv_p)
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_cosine_kl_variance_terms_match_torch_with_equal_means():
    # Aligned means: the cosine mean term is 0 and so is the Gaussian one; the rest must agree
    # with torch's KL for any (non-isotropic) variances.
    mu, lv_q = _gauss(8)
    _, lv_p = _gauss(9)
    ref = kl_divergence(_normal(mu, lv_q), _normal(mu, lv_p))
    torch.testing.assert_close(cosine_kl(mu, lv_q, 3.0 * mu, lv_p), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fn", [cosine_nll, cosine_kl])
def test_cosine_terms_are_invariant_to_rescaling_the_means(fn):
    a, lv_q = _gauss(10)
    b, lv_p = _gauss(11)
    scales = torch.rand(B, 1, dtype=torch.float64) * 10 + 0.1
    args = (a, b, lv_p) if fn is cosine_nll else (a, lv_q, b, lv_p)
    scaled = (a * scales, b * 7.0, lv_p) if fn is cosine_nll else (a * scales, lv_q, b * 7.0, lv_p)
    torch.testing.assert_close(fn(*args), fn(*scaled), atol=1e-10, rtol=1e-10)


def test_cosine_terms_are_zero_for_aligned_means_and_equal_variances():
    mu, lv = _gauss(12)
    # the likelihood is its normaliser alone for aligned directions
    normaliser = cosine_nll(mu, -mu, lv) - 2 / lv.exp().mean(-1)
    assert torch.allclose(cosine_nll(mu, 2.5 * mu, lv), normaliser, atol=1e-12)
    assert torch.allclose(
        cosine_kl(mu, lv, 2.5 * mu, lv), torch.zeros(B, dtype=mu.dtype), atol=1e-12
    )
    # and strictly positive when the directions differ
    assert (cosine_nll(mu, -mu, lv) > cosine_nll(mu, mu, lv)).all()


def test_cosine_nll_scales_with_concentration():
    z, _ = _gauss(13)
    mu, lv = _gauss(14)
    # v = mean_j sigma_j^2: halving every variance doubles the direction term
    half = lv - torch.log(torch.tensor(2.0, dtype=lv.dtype))
    const = 0.5 * D * torch.log(torch.tensor(0.5, dtype=lv.dtype))  # the normaliser's shift
    torch.testing.assert_close(
        cosine_nll(z, mu, half) - cosine_nll(mu, mu, half),
        2 * (cosine_nll(z, mu, lv) - cosine_nll(mu, mu, lv)),
    )
    torch.testing.assert_close(cosine_nll(mu, mu, half) - cosine_nll(mu, mu, lv), const.expand(B))


@pytest.mark.parametrize("fn", [gaussian_kl, cosine_kl, gaussian_nll, cosine_nll])
@pytest.mark.parametrize(
    "lv_q_val, lv_p_val", [(-8.0, 4.0), (4.0, -8.0), (-20.0, 20.0), (20.0, -20.0)]
)
def test_terms_finite_at_extreme_logvars(fn, lv_q_val, lv_p_val):
    g = torch.Generator().manual_seed(0)
    mu_q = torch.randn(B, D, generator=g).mul(10).requires_grad_()
    mu_p = torch.randn(B, D, generator=g).mul(10)
    lv_q = torch.full((B, D), lv_q_val, requires_grad=True)
    lv_p = torch.full((B, D), lv_p_val)
    out = fn(mu_q, mu_p, lv_p) if fn in (gaussian_nll, cosine_nll) else fn(mu_q, lv_q, mu_p, lv_p)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(mu_q.grad).all()
    if lv_q.grad is not None:
        assert torch.isfinite(lv_q.grad).all()


def test_cosine_kl_with_zero_prior_mean_has_no_mean_gradient():
    mu_q, lv_q = _gauss(15)
    mu_q.requires_grad_()
    out = cosine_kl(mu_q, lv_q, torch.zeros_like(mu_q), torch.zeros_like(lv_q))
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(mu_q.grad) == 0


# ----- baselines ---------------------------------------------------------------------------


def test_negative_cosine_definition_and_range():
    p, z = torch.randn(6, 4), torch.randn(6, 4)
    ref = (F.normalize(p, dim=-1) - F.normalize(z, dim=-1)).pow(2).sum(-1).mean()
    torch.testing.assert_close(negative_cosine(p, z), ref)
    assert negative_cosine(p, 3 * p).item() == pytest.approx(0.0, abs=1e-6)
    p.requires_grad_()
    z.requires_grad_()
    negative_cosine(p, z).backward()
    assert z.grad is None  # the target is detached
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_infonce_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k, t = torch.randn(8, 5), torch.randn(8, 5), 0.2
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    sim = qn @ kn.t() / t
    ref = -(sim.diag() - sim.logsumexp(dim=1)).mean() * 2 * t
    torch.testing.assert_close(infonce(q, k, t), ref)


def test_ntxent_matches_explicit_definition():
    torch.manual_seed(0)
    z1, z2, t = torch.randn(6, 5), torch.randn(6, 5), 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = z.shape[0]
    sim = (z @ z.t() / t).exp()
    losses = []
    for i in range(n):
        pos = (i + n // 2) % n
        denom = sum(sim[i, k] for k in range(n) if k != i)
        losses.append(-torch.log(sim[i, pos] / denom))
    torch.testing.assert_close(ntxent(z1, z2, t), torch.stack(losses).mean())


def test_barlow_twins_matches_explicit_definition():
    torch.manual_seed(0)
    z1, z2 = torch.randn(16, 6), torch.randn(16, 6)
    bn = torch.nn.BatchNorm1d(6, affine=False)  # solo-learn standardises with this
    c = bn(z1).t() @ bn(z2) / 16
    on = ((torch.diagonal(c) - 1) ** 2).sum()
    off = (c**2).sum() - (torch.diagonal(c) ** 2).sum()
    torch.testing.assert_close(barlow_twins_loss(z1, z2, 0.005, 0.1), 0.1 * (on + 0.005 * off))
    # perfectly correlated, standardised, decorrelated features give ~0 loss
    a = torch.randn(16, 6)
    e = torch.linalg.qr(a - a.mean(0))[0] * 4.0  # centred, uncorrelated columns
    assert barlow_twins_loss(e, e, 0.005, 1.0).item() < 0.05


# ----- multi-process: the gathered losses equal the single-process loss on the global batch ---


def _dist_worker(rank: int, world: int, init: str, z1, z2, q, k, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        n = z1.shape[0] // world
        sl = slice(rank * n, (rank + 1) * n)
        a, b = z1[sl].clone().requires_grad_(), z2[sl].clone()
        nt = ntxent(a, b, 0.5)
        nt.backward()
        c = z1[sl].clone().requires_grad_()
        bt = barlow_twins_loss(c, z2[sl], 0.005, 0.1)
        bt.backward()
        # plain Python values: tensors sent through the queue would need this process alive
        out = {
            "ntxent": nt.item(),
            "ntxent_grad": a.grad.tolist(),
            "infonce": infonce(q[sl], k[sl], 0.2).item(),
            "barlow": bt.item(),
            "barlow_grad": c.grad.tolist(),
        }
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_losses_match_global_batch(tmp_path):
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    z1, z2, q, k = (torch.randn(8, 5) for _ in range(4))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    init = f"file://{tmp_path / 'pg'}"
    procs = [
        ctx.Process(target=_dist_worker, args=(r, 2, init, z1, z2, q, k, queue)) for r in range(2)
    ]
    for p in procs:
        p.start()
    res = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # each rank averages over its own anchors; the mean over ranks is the global-batch loss
    ref_a = z1.clone().requires_grad_()
    ref = ntxent(ref_a, z2, 0.5)
    ref.backward()
    assert (res[0]["ntxent"] + res[1]["ntxent"]) / 2 == pytest.approx(ref.item(), rel=1e-5)
    assert (res[0]["infonce"] + res[1]["infonce"]) / 2 == pytest.approx(
        infonce(q, k, 0.2).item(), rel=1e-5
    )
    # DDP averages gradients over ranks: the sum of the local grads / world = the global grad
    grad = torch.tensor(res[0]["ntxent_grad"] + res[1]["ntxent_grad"])
    # gathered embeddings carry gradient back to their own rank, so each rank's grad is its
    # share of the global loss's gradient (up to the 1/world averaging DDP adds)
    torch.testing.assert_close(grad / 2, ref_a.grad, rtol=1e-4, atol=1e-6)

    # Barlow Twins: local standardisation, cross-correlation averaged over ranks
    def std(z):
        return (z - z.mean(0)) / (z.var(0, unbiased=False) + 1e-5).sqrt()

    ref_z = z1.clone().requires_grad_()
    c = sum(std(ref_z[s]).t() @ std(z2[s]) / 4 for s in (slice(0, 4), slice(4, 8))) / 2
    on = ((c.diagonal() - 1) ** 2).sum()
    off = (c**2).sum() - (c.diagonal() ** 2).sum()
    ref_bt = 0.1 * (on + 0.005 * off)
    ref_bt.backward()
    assert res[0]["barlow"] == pytest.approx(ref_bt.item(), rel=1e-5) == res[1]["barlow"]
    # every rank computes the same global L; the summed backward gives each rank W * dL/dz_r,
    # which DDP's 1/W averaging turns into dL/dtheta
    bgrad = torch.tensor(res[0]["barlow_grad"] + res[1]["barlow_grad"])
    torch.testing.assert_close(bgrad / 2, ref_z.grad, rtol=1e-4, atol=1e-6)
