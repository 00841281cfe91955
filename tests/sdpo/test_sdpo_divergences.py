"""Divergences over the vocabulary against brute-force references; chunked = direct."""

from __future__ import annotations

import math

import pytest
import torch

from sdpo_exp.config.schemas.loss import JSDLossConfig, TopKLossConfig
from sdpo_exp.sdpo.distillation import chunked_divergence
from sdpo_exp.sdpo.divergences import (
    forward_kl,
    generalized_jsd,
    make_divergence,
    reverse_kl,
    topk_restrict,
)
from sdpo_exp.sdpo.logprobs import LogitHead, LogitMixture


def _logprobs(seed: int, shape=(6, 11), scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(scale * torch.randn(shape, generator=g, dtype=torch.float64), -1)


def brute_kl(lp_p, lp_q):
    out = []
    for row_p, row_q in zip(lp_p.tolist(), lp_q.tolist(), strict=True):
        out.append(sum(math.exp(a) * (a - b) for a, b in zip(row_p, row_q, strict=True) if a > -math.inf))
    return torch.tensor(out, dtype=torch.float64)


def brute_jsd(lp_s, lp_t, alpha):
    """TRL's convention (trl.experimental.sdpo, compute_divergence): m = (1 - a) s + a t,
    (1 - a) KL(s || m) + a KL(t || m); a = 0 is KL(t || s) and a = 1 is KL(s || t) by definition."""
    if alpha == 0:
        return brute_kl(lp_t, lp_s)
    if alpha == 1:
        return brute_kl(lp_s, lp_t)
    out = []
    for rs, rt in zip(lp_s.exp().tolist(), lp_t.exp().tolist(), strict=True):
        mix = [(1 - alpha) * a + alpha * b for a, b in zip(rs, rt, strict=True)]
        v = sum((1 - alpha) * a * math.log(a / m) for a, m in zip(rs, mix, strict=True) if a > 0)
        v += sum(alpha * b * math.log(b / m) for b, m in zip(rt, mix, strict=True) if b > 0)
        out.append(v)
    return torch.tensor(out, dtype=torch.float64)


def test_kl_directions_match_brute_force():
    s, t = _logprobs(0), _logprobs(1)
    assert torch.allclose(reverse_kl(s, t), brute_kl(s, t), atol=1e-12)
    assert torch.allclose(forward_kl(s, t), brute_kl(t, s), atol=1e-12)
    assert not torch.allclose(reverse_kl(s, t), forward_kl(s, t), atol=1e-3)
    assert torch.equal(reverse_kl(s, s), torch.zeros(6, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_generalized_jsd_matches_brute_force(alpha):
    s, t = _logprobs(2), _logprobs(3)
    assert torch.allclose(generalized_jsd(s, t, alpha), brute_jsd(s, t, alpha), atol=1e-10)


def test_jsd_endpoints_are_the_two_kls_and_the_weights_follow_trl():
    s, t = _logprobs(4), _logprobs(5)
    assert torch.allclose(generalized_jsd(s, t, 1.0), reverse_kl(s, t), atol=1e-12)
    assert torch.allclose(generalized_jsd(s, t, 0.0), forward_kl(s, t), atol=1e-12)
    # the mixture form vanishes towards both ends (m -> s, m -> t): as in TRL, not continuous there
    assert float(generalized_jsd(s, t, 1e-6).abs().max()) < 1e-4
    assert float(generalized_jsd(s, t, 1 - 1e-6).abs().max()) < 1e-4
    # at 0.1 most of the weight is on KL(s || m), m close to s: small; the reversed weights are not
    p_s, p_t = s.exp(), t.exp()
    m = 0.9 * p_s + 0.1 * p_t
    reversed_weights = 0.1 * (p_s * (p_s / m).log()).sum(-1) + 0.9 * (p_t * (p_t / m).log()).sum(-1)
    assert not torch.allclose(generalized_jsd(s, t, 0.1), reversed_weights, atol=1e-2)
    with pytest.raises(ValueError):
        generalized_jsd(s, t, 1.5)


def test_topk_restriction_against_brute_force():
    s, t = _logprobs(6), _logprobs(7)
    k = 3
    lp_s, lp_t = topk_restrict(s, t, k, "bucket")
    for b in range(s.shape[0]):
        ids = sorted(range(11), key=lambda v: -float(s[b, v]))[:k]
        rest = [v for v in range(11) if v not in ids]
        exp_s = [float(s[b, v]) for v in ids] + [math.log(sum(math.exp(float(s[b, v])) for v in rest))]
        exp_t = [float(t[b, v]) for v in ids] + [math.log(sum(math.exp(float(t[b, v])) for v in rest))]
        assert torch.allclose(lp_s[b], torch.tensor(exp_s, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(lp_t[b], torch.tensor(exp_t, dtype=torch.float64), atol=1e-12)
    rn_s, rn_t = topk_restrict(s, t, k, "renormalize")
    assert torch.allclose(rn_s.exp().sum(-1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(rn_s, torch.log_softmax(lp_s[:, :k], -1))


@pytest.mark.parametrize("tail", ["bucket", "renormalize"])
def test_topk_with_k_equal_vocab_is_full_kl_values_and_gradients(tail):
    base = torch.randn(6, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    t = _logprobs(9)
    z1 = base.clone().requires_grad_(True)
    z2 = base.clone().requires_grad_(True)
    a = reverse_kl(*topk_restrict(torch.log_softmax(z1, -1), t, 11, tail))
    b = reverse_kl(torch.log_softmax(z2, -1), t)
    a.sum().backward()
    b.sum().backward()
    assert torch.allclose(a, b, atol=1e-12)
    assert torch.isfinite(z1.grad).all()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-12)


def test_gradients_stay_finite_with_zero_probability_tokens():
    z = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    z[:, 0] = -math.inf  # a token no distribution can produce
    zt = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    zt[:, 0] = -math.inf
    for alpha in (0.0, 0.5, 1.0):
        for k in (None, 7):
            zs = z.clone().requires_grad_(True)
            lp_s, lp_t = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
            if k is not None:
                lp_s, lp_t = topk_restrict(lp_s, lp_t, k, "bucket")
            value = generalized_jsd(lp_s, lp_t, alpha).sum()
            value.backward()
            assert torch.isfinite(value) and torch.isfinite(zs.grad).all(), (alpha, k)


def test_make_divergence_reads_the_config():
    s, t = _logprobs(12), _logprobs(13)
    div, temp = make_divergence(JSDLossConfig(alpha=1.0, temperature=0.7))
    assert temp == 0.7 and torch.allclose(div(s, t), reverse_kl(s, t))
    div, _ = make_divergence(TopKLossConfig(k=11))
    assert torch.allclose(div(s, t), reverse_kl(s, t), atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_chunked_divergence_equals_the_direct_computation(temperature):
    torch.manual_seed(0)
    head_module = torch.nn.Linear(8, 13, bias=True, dtype=torch.float64)
    h_s = torch.randn(10, 8, dtype=torch.float64, requires_grad=True)
    h_t1, h_t2 = torch.randn(10, 8, dtype=torch.float64), torch.randn(10, 8, dtype=torch.float64)
    targets = torch.randint(0, 13, (10,))
    head = LogitHead(module=head_module)
    teacher = LogitMixture([(0.25, h_t1, head.frozen()), (0.75, h_t2, head)])
    div_fn = lambda a, b: generalized_jsd(a, b, 0.3)  # noqa: E731

    div, s_tok, t_tok = chunked_divergence(h_s, head, teacher, targets, div_fn, temperature, chunk_size=3)
    (div * torch.arange(10)).sum().backward()
    grad_chunked = h_s.grad.clone()
    w_grad_chunked = head_module.weight.grad.clone()
    h_s.grad = None
    head_module.weight.grad = None

    z_s = head_module(h_s)
    with torch.no_grad():
        z_t = 0.25 * head_module(h_t1) + 0.75 * head_module(h_t2)
    ref = generalized_jsd(
        torch.log_softmax(z_s / temperature, -1), torch.log_softmax(z_t / temperature, -1), 0.3
    )
    (ref * torch.arange(10)).sum().backward()
    assert torch.allclose(div, ref, atol=1e-12)
    assert torch.allclose(grad_chunked, h_s.grad, atol=1e-12)
    assert torch.allclose(w_grad_chunked, head_module.weight.grad, atol=1e-12)
    assert torch.allclose(
        s_tok, torch.log_softmax(z_s, -1).gather(1, targets[:, None]).squeeze(1), atol=1e-12
    )
    assert torch.allclose(
        t_tok, torch.log_softmax(z_t, -1).gather(1, targets[:, None]).squeeze(1), atol=1e-12
    )
    assert s_tok.grad_fn is None and t_tok.grad_fn is None
