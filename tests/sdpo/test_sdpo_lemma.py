"""Lemma B.1, numerically: E_{y ~ pi(.|x)}[grad of the pg loss] = grad of the summed reverse KL.

A tiny model with a vocabulary of 5 tokens, token 4 ending a completion. Every completion of at most
T tokens is enumerated: the ones that end early with token 4 and the ones cut at T, so the rows
have unequal lengths. Each is weighted by its (detached) probability under the student, which makes
the expectation exact. The enumeration is scored in two micro-batches of different sizes and
lengths, as a training step would split it.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from sdpo_testutils import tiny_lm

from sdpo_exp.config.schemas.loss import FullKLLossConfig, LengthNorm, PGLossConfig
from sdpo_exp.sdpo.batching import collate_encoded
from sdpo_exp.sdpo.divergences import reverse_kl
from sdpo_exp.sdpo.objective import SDPOObjective

VOCAB = 5
END = 4
X = [1, 3, 2]  # student context
XO = [1, 3, 2, 4, 4, 0, 1]  # teacher context: x plus a "follow-up"


def completions(max_len: int) -> list[list[int]]:
    """Every y: a run of non-END tokens closed by END, or max_len tokens (the last one any token)."""
    out = []
    for length in range(1, max_len + 1):
        for body in itertools.product(range(END), repeat=length - 1):
            out.append([*body, END])
        if length == max_len:
            out += [
                [*body, last]
                for body in itertools.product(range(END), repeat=length - 1)
                for last in range(END)
            ]
    return out


def batch_of(ys: list[list[int]]):
    encoded = [{"student_ids": X, "teacher_ids": XO, "completion_ids": y} for y in ys]
    return collate_encoded(encoded, pad_id=0)


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def brute_force_kl_gradient(model, max_len: int) -> torch.Tensor:
    """grad sum_i sum_{y<i open} sg(pi(y<i | x)) KL(pi(.|x, y<i) || sg(pi(.|x, o, y<i))), plain logits."""
    model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(max_len):
        for prefix in itertools.product(range(END), repeat=i):  # prefixes still open (no END yet)
            lp_s_all = torch.log_softmax(model(input_ids=torch.tensor([X + list(prefix)])).logits[0], -1)
            with torch.no_grad():
                lp_t = torch.log_softmax(model(input_ids=torch.tensor([XO + list(prefix)])).logits[0, -1], -1)
                weight = sum(float(lp_s_all[len(X) - 1 + j, tok]) for j, tok in enumerate(prefix))
            total = total + torch.exp(torch.tensor(weight, dtype=torch.float64)) * reverse_kl(
                lp_s_all[-1], lp_t
            )
    total.backward()
    return grads(model)


def expected_gradient(model, cfg, parts) -> torch.Tensor:
    """grad sum_y sg(pi(y)) n_y over the micro-batches `parts`, n_y the loss's per-sequence numerators."""
    model.zero_grad()
    objective = SDPOObjective(model, cfg)
    total_probability = 0.0
    for ys in parts:
        out = objective(batch_of(ys))
        weights = out.student_logprobs.sum(1).exp()  # pi(y | x), detached
        total_probability += float(weights.sum())
        (weights * out.per_sequence).sum().backward()
    assert total_probability == pytest.approx(1.0, abs=1e-6)
    return grads(model)


@pytest.mark.parametrize("max_len", [2, 3])
def test_expected_pg_gradient_equals_summed_reverse_kl_gradient(max_len):
    model = tiny_lm(VOCAB, torch.float64, seed=max_len)
    ys = completions(max_len)
    assert len({len(y) for y in ys}) == max_len  # unequal lengths
    # two micro-batches of different sizes: the short completions, then the rest
    parts = [
        [y for y in ys if len(y) < max_len or y[0] == 0],
        [y for y in ys if len(y) == max_len and y[0] != 0],
    ]

    brute = brute_force_kl_gradient(model, max_len)
    scale = float(brute.abs().max())
    assert scale > 1e-3, "a vanishing gradient would make the test meaningless"
    tolerance = 1e-5 * max(1.0, scale)

    # token normalisation: every token weighs the same whatever its sequence's length, as in the lemma
    pg = expected_gradient(model, PGLossConfig(chunk_size=16, length_norm=LengthNorm.token), parts)
    kl = expected_gradient(model, FullKLLossConfig(chunk_size=16, length_norm=LengthNorm.token), parts)
    assert float((pg - brute).abs().max()) <= tolerance
    assert float((kl - brute).abs().max()) <= tolerance

    # a per-sequence mean weighs a token by 1/|y|, which depends on later tokens: the lemma fails
    per_seq = expected_gradient(model, PGLossConfig(chunk_size=16, length_norm=LengthNorm.sequence), parts)
    assert float((per_seq - brute).abs().max()) > 100 * tolerance

    # one sampled completion alone is not the expectation: the lemma is about the mean
    model.zero_grad()
    single = SDPOObjective(model, PGLossConfig(length_norm=LengthNorm.token))(batch_of(ys))
    single.per_sequence[7].backward()
    assert float((grads(model) - brute).abs().max()) > 1e-3
