"""Lemma B.1, numerically: E_{y ~ pi(.|x)}[grad of the pg loss] = grad of the summed reverse KL.

A tiny model with a vocabulary of 5 tokens; every completion of length T in {2, 3} is enumerated
and weighted by its (detached) probability under the student, which makes the expectation exact.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from sdpo_testutils import tiny_lm

from sdpo_exp.config.schemas.loss import FullKLLossConfig, PGLossConfig
from sdpo_exp.sdpo.batching import collate_encoded
from sdpo_exp.sdpo.divergences import reverse_kl
from sdpo_exp.sdpo.objective import SDPOObjective

VOCAB = 5
X = [1, 3, 2]  # student context
XO = [1, 3, 2, 4, 4, 0, 1]  # teacher context: x plus a "follow-up"


def all_completions(length: int):
    encoded = [
        {"student_ids": X, "teacher_ids": XO, "completion_ids": list(y)}
        for y in itertools.product(range(VOCAB), repeat=length)
    ]
    return collate_encoded(encoded, pad_id=0)


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def brute_force_kl_gradient(model, length: int) -> torch.Tensor:
    """grad_theta sum_i sum_{y<i} sg(pi(y<i | x)) KL(pi(.|x, y<i) || sg(pi(.|x, o, y<i))), from plain logits."""
    model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(length):
        for prefix in itertools.product(range(VOCAB), repeat=i):
            s_ids = torch.tensor([X + list(prefix)])
            t_ids = torch.tensor([XO + list(prefix)])
            lp_s_all = torch.log_softmax(model(input_ids=s_ids).logits[0], -1)
            with torch.no_grad():
                lp_t = torch.log_softmax(model(input_ids=t_ids).logits[0, -1], -1)
                # probability of the prefix under the student (detached weight)
                weight = sum(float(lp_s_all[len(X) - 1 + j, tok]) for j, tok in enumerate(prefix))
            total = total + torch.exp(torch.tensor(weight, dtype=torch.float64)) * reverse_kl(
                lp_s_all[-1], lp_t
            )
    total.backward()
    return grads(model)


@pytest.mark.parametrize("length", [2, 3])
def test_expected_pg_gradient_equals_summed_reverse_kl_gradient(length):
    model = tiny_lm(VOCAB, torch.float64, seed=length)
    batch = all_completions(length)

    pg = SDPOObjective(model, PGLossConfig(chunk_size=16))(batch)
    weights = pg.student_logprobs.sum(1).exp()  # pi(y | x), detached
    assert torch.allclose(weights.sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6)
    model.zero_grad()
    (weights * pg.per_sequence).sum().backward()
    expected_pg = grads(model)

    model.zero_grad()
    kl = SDPOObjective(model, FullKLLossConfig(chunk_size=16))(batch)
    (weights * kl.per_sequence).sum().backward()
    kl_grad = grads(model)

    # every completion has the same length T and L_b = T: both sides carry the same 1/T
    brute = brute_force_kl_gradient(model, length) / length
    scale = float(brute.abs().max())
    assert scale > 1e-3, "a vanishing gradient would make the test meaningless"
    assert float((expected_pg - brute).abs().max()) <= 1e-5 * max(1.0, scale)
    assert float((kl_grad - brute).abs().max()) <= 1e-5 * max(1.0, scale)
    # one sampled completion alone is not the expectation: the lemma is about the mean
    model.zero_grad()
    single = SDPOObjective(model, PGLossConfig())(all_completions(length))
    single.per_sequence[7].backward()
    assert float((grads(model) - brute).abs().max()) > 1e-3
