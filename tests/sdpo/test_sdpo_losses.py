"""The loss family: pg gradient = -sum_i A_i grad log p_i / L_b, options, metrics, A = 0 controls."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from sdpo_testutils import reference_logprobs, tiny_lm

from sdpo_exp.config.schemas.loss import (
    FullKLLossConfig,
    HindsightConfig,
    HindsightTemplate,
    JSDLossConfig,
    LengthNorm,
    PGLossConfig,
    SFTLossConfig,
    TopKLossConfig,
)
from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo import losses
from sdpo_exp.sdpo.batching import BatchBuilder, collate_encoded
from sdpo_exp.sdpo.divergences import forward_kl, reverse_kl
from sdpo_exp.sdpo.objective import SDPOObjective

VOCAB = 23


def toy_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rows = [(4, 5), (6, 3), (3, 6)]  # (prompt length, completion length)
    encoded = []
    for p_len, c_len in rows:
        prompt = torch.randint(1, VOCAB, (p_len,), generator=g).tolist()
        extra = torch.randint(1, VOCAB, (3,), generator=g).tolist()  # the "follow-up" tokens
        completion = torch.randint(1, VOCAB, (c_len,), generator=g).tolist()
        encoded.append(
            {
                "student_ids": prompt,
                "teacher_ids": prompt + extra,
                "completion_ids": completion,
                "completion_ended": True,
            }
        )
    return collate_encoded(encoded, pad_id=0)


def ref_token_logprobs(model, ids, attn, prompt_lens, batch):
    logits = model(input_ids=ids, attention_mask=attn).logits
    return reference_logprobs(logits, prompt_lens, batch.completion_ids, batch.completion_mask)


def test_pg_gradient_is_minus_sum_of_advantage_times_grad_logp():
    model = tiny_lm(VOCAB, torch.float64)
    batch = toy_batch()
    out = SDPOObjective(model, PGLossConfig(chunk_size=4))(batch)
    out.loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    # independent reference: plain full-vocabulary log_softmax, one gradient per token
    with torch.no_grad():
        t = ref_token_logprobs(
            model, batch.teacher_input_ids, batch.teacher_attention_mask, batch.teacher_prompt_lens, batch
        )
    s = ref_token_logprobs(
        model, batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens, batch
    )
    adv = (t - s).detach()
    mask = batch.completion_mask
    assert torch.allclose(out.advantages[mask], adv[mask], atol=1e-10)
    expected = [torch.zeros_like(p) for p in model.parameters()]
    B = mask.shape[0]
    for b in range(B):
        L = int(mask[b].sum())
        for i in range(L):
            grads = torch.autograd.grad(s[b, i], list(model.parameters()), retain_graph=True)
            for e, g in zip(expected, grads, strict=True):
                e -= adv[b, i] * g / (L * B)
    # float64 model, but Qwen3's RMSNorm computes in float32: agreement to 1e-6 of the gradient scale
    scale = max(float(e.abs().max()) for e in expected)
    assert scale > 1e-3
    for g, e in zip(got, expected, strict=True):
        assert float((g - e).abs().max()) <= 1e-6 * scale


def test_topk_with_k_vocab_equals_full_kl_and_jsd_endpoints():
    batch = toy_batch(1)
    results = {}
    for name, cfg in {
        "full_kl": FullKLLossConfig(),
        "topk_bucket": TopKLossConfig(k=VOCAB),
        "topk_renorm": TopKLossConfig(k=VOCAB, tail="renormalize"),
        "jsd1": JSDLossConfig(alpha=1.0),
        "jsd0": JSDLossConfig(alpha=0.0),
        "topk5": TopKLossConfig(k=5),
    }.items():
        model = tiny_lm(VOCAB, torch.float64)
        out = SDPOObjective(model, cfg)(batch)
        out.loss.backward()
        results[name] = (out.loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    for name in ("topk_bucket", "topk_renorm", "jsd1"):
        assert torch.allclose(results[name][0], results["full_kl"][0], atol=1e-12), name
        assert torch.allclose(results[name][1], results["full_kl"][1], atol=1e-10), name
    assert not torch.allclose(results["jsd0"][0], results["full_kl"][0], atol=1e-4)
    assert not torch.allclose(results["topk5"][0], results["full_kl"][0], atol=1e-6)

    # jsd alpha 0 is the forward KL, token mean: check against a direct computation
    model = tiny_lm(VOCAB, torch.float64)
    mask = batch.completion_mask

    def positions(ids, attn, plens):
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits, -1)
        return torch.stack(
            [
                logp[b, int(plens[b]) + j - 1]
                for b in range(len(batch))
                for j in range(mask.shape[1])
                if mask[b, j]
            ]
        )

    lp_s = positions(batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens)
    with torch.no_grad():
        lp_t = positions(batch.teacher_input_ids, batch.teacher_attention_mask, batch.teacher_prompt_lens)
    assert torch.allclose(results["jsd0"][0], forward_kl(lp_s, lp_t).mean(), atol=1e-12)
    assert torch.allclose(results["full_kl"][0], reverse_kl(lp_s, lp_t).mean(), atol=1e-12)


@pytest.mark.parametrize(
    "loss_cfg", [PGLossConfig(), FullKLLossConfig(), TopKLossConfig(k=7), JSDLossConfig(alpha=0.5, top_k=9)]
)
def test_template_that_adds_nothing_gives_zero_advantage_exactly(tiny_tokenizer, tiny_model, loss_cfg):
    nothing = HindsightConfig(template=HindsightTemplate.custom, custom="")
    builder = BatchBuilder(tiny_tokenizer, nothing, {"enable_thinking": False}, 256, 24)
    batch, skipped = builder.build(
        [
            Interaction(
                [{"role": "user", "content": "Write a haiku about rain."}],
                "Rain taps the window.",
                "Shorter.",
            ),
            Interaction(
                [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "4", "ok"
            ),
        ]
    )
    assert not skipped and batch.student_texts == batch.teacher_texts
    # the shared prefix recomputes the reply after a cached context, which rounds differently from one
    # pass over the whole row (docs/losses.md): equal to float32 rounding, not bit for bit
    shared = SDPOObjective(tiny_model, replace(loss_cfg, shared_prefix=True))(batch)
    assert torch.allclose(shared.teacher_logprobs, shared.student_logprobs, rtol=0, atol=1e-5)
    assert float(shared.advantages.abs().max()) < 1e-5
    tiny_model.zero_grad(set_to_none=True)
    out = SDPOObjective(tiny_model, replace(loss_cfg, shared_prefix=False))(batch)
    assert torch.equal(out.teacher_logprobs, out.student_logprobs)
    assert torch.equal(out.advantages, torch.zeros_like(out.advantages))
    assert out.metrics["adv_abs_mean"] == 0.0
    out.loss.backward()
    grad_max = max(float(p.grad.abs().max()) for p in tiny_model.parameters() if p.grad is not None)
    if loss_cfg.name == "pg":
        assert out.loss.item() == 0.0 and grad_max == 0.0
    else:
        # identical distributions: the divergence is 0 up to float32 rounding (sum_v p_v is not exactly
        # 1, log(0.5) + log(2) is not exactly 0), and so is its gradient
        assert abs(out.loss.item()) < 1e-7 and grad_max < 1e-6
    # and a real follow-up does move the teacher
    builder = BatchBuilder(tiny_tokenizer, HindsightConfig(), {"enable_thinking": False}, 256, 24)
    batch, _ = builder.build([Interaction([{"role": "user", "content": "Hi"}], "Hello there!", "Shorter.")])
    assert SDPOObjective(tiny_model, loss_cfg)(batch).metrics["adv_abs_mean"] > 0


def test_pg_options_on_hand_made_tensors():
    s = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-0.5, -0.5, 0.0, 0.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 3.0, 9.0], [2.0, 4.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    # sequence norm: l_0 = -(1*-1 + -1*-2 + 3*-3)/3 = 8/3; l_1 = -(2*-.5 + 4*-.5)/2 = 1.5
    per_seq = losses.pg_loss(s, losses.shape_advantages(adv, mask), mask, LengthNorm.sequence)
    assert torch.allclose(per_seq, torch.tensor([8 / 3, 1.5]))
    assert losses.normaliser_units(mask, "sequence").tolist() == [1.0, 1.0]
    # token norm: numerators are plain sums, the units the token counts: all 5 tokens weigh the same
    per_tok = losses.pg_loss(s, adv * mask, mask, "token")
    assert torch.allclose(per_tok, torch.tensor([8.0, 3.0]))
    assert losses.normaliser_units(mask, "token").tolist() == [3.0, 2.0]
    # ignore_first_k=2 leaves row 1 without loss tokens: it is out of the sequence mean, not a zero in it
    k2 = losses.loss_mask(mask, 2)
    assert losses.normaliser_units(k2, "sequence").tolist() == [1.0, 0.0]
    # ignore_first_k=1 drops column 0
    km = losses.loss_mask(mask, 1)
    assert km.tolist() == [[False, True, True, False], [False, True, False, False]]
    # centring per sequence over the loss mask, then clipping
    centred = losses.shape_advantages(adv, mask, center=True)
    assert torch.allclose(centred[0, :3], torch.tensor([0.0, -2.0, 2.0]))
    assert torch.allclose(centred[1, :2], torch.tensor([-1.0, 1.0]))
    assert (centred[~mask] == 0).all()
    clipped = losses.shape_advantages(adv, mask, clip=1.5)
    assert clipped[0, :3].tolist() == [1.0, -1.0, 1.5] and clipped[1, :2].tolist() == [1.5, 1.5]
    # sft and the gradient of pg
    assert torch.allclose(losses.sft_loss(s, mask, "token").sum() / 5, torch.tensor(7.0 / 5))
    per_seq.mean().backward()
    assert torch.allclose(s.grad, -adv * mask / torch.tensor([[3.0], [2.0]]) / 2)


def test_pg_objective_options_change_the_loss_as_specified():
    batch = toy_batch(2)
    model = tiny_lm(VOCAB, torch.float64)
    plain = SDPOObjective(model, PGLossConfig())(batch)
    mask = batch.completion_mask
    s, adv = plain.student_logprobs, plain.advantages
    for cfg, expected_mask, shaped in [
        (PGLossConfig(ignore_first_k=2), losses.loss_mask(mask, 2), None),
        (PGLossConfig(center_advantages=True), mask, losses.shape_advantages(adv, mask, center=True)),
        (PGLossConfig(clip_advantages=0.05), mask, losses.shape_advantages(adv, mask, clip=0.05)),
        (PGLossConfig(length_norm=LengthNorm.token), mask, None),
    ]:
        shaped = shaped if shaped is not None else adv * expected_mask
        units = losses.normaliser_units(expected_mask, cfg.length_norm).sum()
        expected = losses.pg_loss(s, shaped, expected_mask, cfg.length_norm).sum() / units
        got = SDPOObjective(model, cfg)(batch)
        assert torch.allclose(got.loss.detach(), expected, atol=1e-12), cfg
        assert not torch.allclose(got.loss.detach(), plain.loss.detach(), atol=1e-9), cfg
    assert "adv_clip_frac" in SDPOObjective(model, PGLossConfig(clip_advantages=0.05))(batch).metrics


def test_metrics_are_what_they_say():
    batch = toy_batch(3)
    model = tiny_lm(VOCAB, torch.float64)
    out = SDPOObjective(model, PGLossConfig())(batch)
    mask = batch.completion_mask
    a = (out.teacher_logprobs - out.student_logprobs)[mask]
    m = out.metrics
    assert m["num_tokens"] == float(mask.sum()) and m["num_sequences"] == 3.0
    assert m["adv_mean"] == pytest.approx(float(a.mean()))
    assert m["adv_abs_mean"] == pytest.approx(float(a.abs().mean()))
    assert m["adv_std"] == pytest.approx(float(a.std(unbiased=False)))
    assert m["adv_pos_frac"] == pytest.approx(float((a > 0).double().mean()))
    assert m["student_logprob_mean"] == pytest.approx(float(out.student_logprobs[mask].mean()))
    assert m["teacher_logprob_mean"] == pytest.approx(float(out.teacher_logprobs[mask].mean()))
    lengths = mask.sum(1)
    last = out.advantages[torch.arange(3), lengths - 1]
    assert m["num_eos_tokens"] == 3.0 and m["adv_eos_mean"] == pytest.approx(float(last.mean()))
    assert m["loss_sum"] / m["loss_units"] == pytest.approx(float(out.loss.detach()))
    assert m["loss_units"] == 3.0  # pg's default: the mean over sequences
    sft = SDPOObjective(model, SFTLossConfig())(batch)
    assert "adv_mean" not in sft.metrics and sft.advantages is None
    assert sft.loss.item() == pytest.approx(-float(out.student_logprobs[mask].mean()))


def test_kl_to_ref_beta_for_pg_equals_subtracting_beta_k1_from_the_advantage():
    batch = toy_batch(4)
    model = tiny_lm(VOCAB, torch.float64)
    # move the weights away from the reference so that k1 is not zero
    obj = SDPOObjective(model, PGLossConfig(kl_to_ref_beta=0.3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = obj(batch)
    out.loss.backward()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert out.metrics["ref_kl_k1_mean"] != 0.0
    model.zero_grad()

    plain = SDPOObjective(model, PGLossConfig())(batch)
    ref_model = tiny_lm(VOCAB, torch.float64)  # same seed: the initial weights
    with torch.no_grad():
        ref = ref_token_logprobs(
            ref_model, batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens, batch
        )
    s = ref_token_logprobs(
        model, batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens, batch
    )
    adv = plain.advantages - 0.3 * (s.detach() - ref)
    losses.pg_loss(s, adv * batch.completion_mask, batch.completion_mask, "sequence").mean().backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float((got - expected).abs().max()) <= 1e-6 * float(expected.abs().max())
