"""Truncated importance weights (`loss.is_clip`) against an independent computation from stored
sampler log-probs: w = min(exp(log pi(y_t) - log q(y_t)), c) per token, 1 where q is unknown, the
per-token loss terms multiplied by sg(w); the loss, its gradient and the mismatch metrics."""

from __future__ import annotations

import pytest
import torch
from exact_reference import completion_distributions, large_logit_lm, per_token_values, unequal_batch

from sdpo_exp.config.schemas.loss import PGLossConfig, TopKLossConfig
from sdpo_exp.sdpo.batching import collate_encoded
from sdpo_exp.sdpo.objective import SDPOObjective

VOCAB = 41
LENGTHS = [1, 4, 9, 6]


def _batch(model):
    """Rows of unequal lengths whose sampler log-probs are the model's own, moved by known offsets
    (one unknown token per row but the first: an appended end-of-turn token)."""
    encoded, batch = unequal_batch(VOCAB, LENGTHS, seed=3)
    with torch.no_grad():
        lp = completion_distributions(
            model, batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens,
            batch.completion_ids.shape[1],
        ).gather(-1, batch.completion_ids[..., None]).squeeze(-1)  # fmt: skip
    gen = torch.Generator().manual_seed(5)
    for i, e in enumerate(encoded):
        offsets = torch.empty(LENGTHS[i]).uniform_(-1.5, 1.5, generator=gen)
        values = (lp[i, : LENGTHS[i]] + offsets).tolist()
        if i > 0:
            values[-1] = None
        e["sampler_logprobs"] = values
    return encoded, collate_encoded(encoded, pad_id=0)


def _reference(model, batch, cfg, clip):
    width = batch.completion_ids.shape[1]
    lp_s = completion_distributions(
        model, batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens, width
    )
    with torch.no_grad():
        lp_t = completion_distributions(
            model, batch.teacher_input_ids, batch.teacher_attention_mask, batch.teacher_prompt_lens, width
        )
    targets = batch.completion_ids[..., None]
    s, t = lp_s.gather(-1, targets).squeeze(-1), lp_t.gather(-1, targets).squeeze(-1)
    values = per_token_values(str(cfg.name), cfg, lp_s, lp_t, s, t)
    mask = batch.completion_mask
    w = torch.ones_like(s)
    known, mismatches = [], []
    for b in range(s.shape[0]):
        for j in range(int(mask[b].sum())):
            q = float(batch.sampler_logprobs[b, j])
            if q == q:  # not NaN
                ratio = float(torch.exp(s[b, j].detach().double() - q))
                w[b, j] = min(ratio, clip)
                known.append(ratio > clip)
                mismatches.append(abs(float(s[b, j].detach()) - q))
    values = torch.where(mask, values * w, torch.zeros_like(values))
    lengths = mask.sum(1).to(values.dtype)
    if cfg.length_norm.value == "sequence":
        loss = (values.sum(1) / lengths).sum() / len(lengths)
    else:
        loss = values.sum() / lengths.sum()
    return loss, w, sum(mismatches) / len(mismatches), sum(known) / len(known)


@pytest.mark.parametrize(
    "cfg",
    [PGLossConfig(chunk_size=3, is_clip=1.5), TopKLossConfig(chunk_size=3, k=5, is_clip=2.0)],
    ids=["pg", "topk"],
)
def test_weighted_loss_and_gradient_match_the_independent_computation(cfg):
    model = large_logit_lm(VOCAB, torch.float64, seed=2, head_scale=3.0)
    _, batch = _batch(model)
    out = SDPOObjective(model, cfg)(batch)
    out.loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])

    ref_model = large_logit_lm(VOCAB, torch.float64, seed=2, head_scale=3.0)
    ref_loss, w, mismatch, clipped = _reference(ref_model, batch, cfg, float(cfg.is_clip))
    ref_loss.backward()
    ref_grad = torch.cat([p.grad.flatten() for p in ref_model.parameters()])

    assert 0 < clipped < 1  # some tokens clipped, some not: both branches checked
    assert float(out.loss) == pytest.approx(float(ref_loss), rel=1e-6)
    assert float((grad - ref_grad).abs().max()) <= 1e-6 * float(ref_grad.abs().max())
    assert out.metrics["is_log_ratio_abs_mean"] == pytest.approx(mismatch, rel=1e-6)
    assert out.metrics["is_clip_frac"] == pytest.approx(clipped)
    known = batch.completion_mask & ~torch.isnan(batch.sampler_logprobs)
    assert out.metrics["is_weight_mean"] == pytest.approx(float(w[known].mean()), rel=1e-6)


def test_without_is_clip_the_loss_is_unweighted_and_the_mismatch_still_logged():
    model = large_logit_lm(VOCAB, torch.float64, seed=2, head_scale=3.0)
    encoded, batch = _batch(model)
    plain = collate_encoded(
        [{k: v for k, v in e.items() if k != "sampler_logprobs"} for e in encoded], pad_id=0
    )
    assert plain.sampler_logprobs is None
    cfg = PGLossConfig(chunk_size=3)
    with_q, without_q = SDPOObjective(model, cfg)(batch), SDPOObjective(model, cfg)(plain)
    assert float(with_q.loss) == pytest.approx(float(without_q.loss), rel=1e-12)
    assert with_q.metrics["is_log_ratio_abs_mean"] > 0.3  # the offsets are uniform in +-1.5
    assert "is_log_ratio_abs_mean" not in without_q.metrics and "is_weight_mean" not in with_q.metrics
