"""The fused top-K divergence (`fused_topk`) against the generic chunked path (autograd through
`topk_restrict`): values, target log-probs and gradients of hidden states, weight and bias."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from sdpo_exp.sdpo.distillation import chunked_divergence
from sdpo_exp.sdpo.divergences import TopKDivergence, generalized_jsd, reverse_kl
from sdpo_exp.sdpo.logprobs import LogitHead, LogitMixture

N, H, V = 37, 16, 300

SPECS = {
    "topk_bucket": TopKDivergence(5, "bucket", reverse_kl),
    "topk_renormalize": TopKDivergence(5, "renormalize", reverse_kl),
    "jsd_bucket": TopKDivergence(9, "bucket", partial(generalized_jsd, alpha=0.3)),
    "k_is_vocab": TopKDivergence(V, "bucket", reverse_kl),
    "k_over_vocab_jsd": TopKDivergence(V + 5, "renormalize", partial(generalized_jsd, alpha=0.9)),
}


def run(spec, temperature, softcap, scale, fused, dtype=torch.float64, student_scale=8.0):
    torch.manual_seed(0)  # the same numbers whatever the dtype: drawn in float64, then cast
    student = torch.nn.Linear(H, V, dtype=torch.float64)
    teacher = torch.nn.Linear(H, V, bias=False, dtype=torch.float64)
    with torch.no_grad():
        student.weight.mul_(student_scale)
        teacher.weight.mul_(8.0)
    student, teacher = student.to(dtype), teacher.to(dtype)
    hidden = torch.randn(N, H, dtype=torch.float64).to(dtype).requires_grad_(True)
    teacher_hidden = torch.randn(N, H, dtype=torch.float64).to(dtype)
    targets = torch.randint(0, V, (N,))
    weights = torch.randn(N, dtype=torch.float64).to(dtype)
    head = LogitHead(module=student, softcap=softcap, scale=scale)
    if not fused:
        head.linear_parts = lambda: None  # forces the generic path
    mixture = LogitMixture(
        [
            (0.7, teacher_hidden, LogitHead(module=teacher)),
            (0.3, 0.5 * teacher_hidden, LogitHead(module=teacher)),
        ]
    )
    div, s_tok, t_tok = chunked_divergence(hidden, head, mixture, targets, spec, temperature, chunk_size=7)
    (div * weights).sum().backward()
    return [div.detach(), s_tok, t_tok, hidden.grad, student.weight.grad, student.bias.grad]


@pytest.mark.parametrize(
    "temperature,softcap,scale",
    [(1.0, None, 1.0), (0.7, 30.0, 1.3)],
    ids=["plain", "temperature_softcap_scale"],
)
@pytest.mark.parametrize("case", sorted(SPECS))
def test_fused_topk_matches_the_generic_path(case, temperature, softcap, scale):
    fused = run(SPECS[case], temperature, softcap, scale, fused=True)
    generic = run(SPECS[case], temperature, softcap, scale, fused=False)
    assert float(fused[0].abs().max()) > 1e-3  # a divergence worth comparing
    for got, expected in zip(fused, generic, strict=True):
        assert torch.allclose(got, expected, rtol=1e-10, atol=1e-11), float((got - expected).abs().max())


def test_fused_topk_float32_with_a_vanishing_tail():
    """Top logits far above the rest (tail mass below e^-50): the bucket stays finite, and the float32
    fused path is as close to a float64 computation as the float32 generic path is."""
    spec = TopKDivergence(5, "bucket", reverse_kl)
    truth = run(spec, 1.0, None, 1.0, fused=False, dtype=torch.float64, student_scale=60.0)
    fused = run(spec, 1.0, None, 1.0, fused=True, dtype=torch.float32, student_scale=60.0)
    generic = run(spec, 1.0, None, 1.0, fused=False, dtype=torch.float32, student_scale=60.0)
    assert float(truth[1].min()) < -50  # targets outside the top: log-probs far below the top's
    for exact, got, other in zip(truth, fused, generic, strict=True):
        assert torch.isfinite(got).all()
        error, other_error = (got.double() - exact).abs().max(), (other.double() - exact).abs().max()
        assert error <= 2 * other_error + 1e-5 * exact.abs().max(), (float(error), float(other_error))
