"""Chunked completion log-probs equal a plain full-vocabulary log_softmax (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from sdpo_testutils import reference_logprobs

from sdpo_exp.models import load_model
from sdpo_exp.sdpo.batching import collate_encoded
from sdpo_exp.sdpo.logprobs import (
    LogitHead,
    LogitMixture,
    chunked_token_logprobs,
    completion_hidden_states,
    completion_logprobs,
)

from conftest import CACHE_DIR, model_cfg


def random_batch(vocab: int, seed: int = 0, rows: int = 3):
    g = torch.Generator().manual_seed(seed)
    encoded = []
    for b in range(rows):
        p_len = 3 + 4 * b
        c_len = 9 - 3 * b if b < 3 else 2
        ids = torch.randint(0, vocab, (p_len + c_len,), generator=g).tolist()
        encoded.append(
            {"student_ids": ids[:p_len], "teacher_ids": ids[:p_len], "completion_ids": ids[p_len:]}
        )
    return collate_encoded(encoded, pad_id=0)


def _inputs(batch):
    return (
        batch.student_input_ids,
        batch.student_attention_mask,
        batch.student_prompt_lens,
        batch.completion_ids,
        batch.completion_mask,
    )


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_fp32_values_and_gradients_match_log_softmax(tiny_model, chunk_size):
    model = tiny_model
    batch = random_batch(model.config.vocab_size)
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(1))

    lp = completion_logprobs(model, *_inputs(batch), chunk_size=chunk_size)
    (lp * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    logits = model(input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask).logits
    ref = reference_logprobs(logits, batch.student_prompt_lens, batch.completion_ids, batch.completion_mask)
    (ref * weights).sum().backward()

    assert lp.dtype == torch.float32 and lp.shape == batch.completion_ids.shape
    assert torch.allclose(lp, ref, atol=1e-5, rtol=0)
    assert (lp[~batch.completion_mask] == 0).all()
    for name, p in model.named_parameters():
        # float32 sums in a different order: agree to 1e-5 of the gradient's scale
        scale = float(p.grad.abs().max())
        assert float((grads[name] - p.grad).abs().max()) <= 1e-5 * scale + 1e-7, name


def test_bf16_model_accumulates_in_float32(tiny_tokenizer):
    torch.manual_seed(0)
    model = load_model(model_cfg("tiny_random", dtype="bfloat16"), CACHE_DIR, tiny_tokenizer)
    batch = random_batch(model.config.vocab_size, seed=3)
    with torch.no_grad():
        lp = completion_logprobs(model, *_inputs(batch), chunk_size=5)
        logits = model(input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask).logits
    assert logits.dtype == torch.bfloat16 and lp.dtype == torch.float32
    ref = reference_logprobs(
        logits.float(), batch.student_prompt_lens, batch.completion_ids, batch.completion_mask
    )
    # Stated bf16 tolerance: 1e-4 absolute against log_softmax in float32 of the model's own bf16
    # logits (measured here: <= 2e-6; the bf16 logits are the same, only float32 sums differ).
    assert torch.allclose(lp, ref, atol=1e-4, rtol=0)
    # A bf16 reduction (log_softmax in bf16) would be far off: the float32 accumulation matters.
    bf16_ref = reference_logprobs(
        torch.log_softmax(logits, dim=-1),
        batch.student_prompt_lens,
        batch.completion_ids,
        batch.completion_mask,
    )
    assert (lp - ref).abs().max() < (bf16_ref - ref).abs().max()


def test_peft_model_with_and_without_adapter(tiny_tokenizer):
    torch.manual_seed(0)
    cfg = model_cfg("tiny_random", **{"lora.enabled": True, "lora.r": 4, "lora.dropout": 0.0})
    model = load_model(cfg, CACHE_DIR, tiny_tokenizer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    batch = random_batch(model.config.vocab_size, seed=5)
    with torch.no_grad():
        lp = completion_logprobs(model, *_inputs(batch))
        ref = reference_logprobs(
            model(input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask).logits,
            batch.student_prompt_lens,
            batch.completion_ids,
            batch.completion_mask,
        )
        with model.disable_adapter():
            lp_base = completion_logprobs(model, *_inputs(batch))
            ref_base = reference_logprobs(
                model(input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask).logits,
                batch.student_prompt_lens,
                batch.completion_ids,
                batch.completion_mask,
            )
    assert torch.allclose(lp, ref, atol=1e-5, rtol=0)
    assert torch.allclose(lp_base, ref_base, atol=1e-5, rtol=0)
    assert (lp - lp_base).abs().max() > 1e-3, "the adapter must change the log-probs"


def _tiny(kind: str):
    from transformers import (
        CohereConfig,
        CohereForCausalLM,
        Gemma2Config,
        Gemma2ForCausalLM,
        GraniteConfig,
        GraniteForCausalLM,
    )

    common = dict(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    if kind == "gemma2_softcap":
        return Gemma2ForCausalLM(
            Gemma2Config(**common, final_logit_softcapping=0.7, attn_implementation="eager")
        )
    if kind == "cohere_logit_scale":
        return CohereForCausalLM(CohereConfig(**common, logit_scale=3.0))
    return GraniteForCausalLM(GraniteConfig(**common, logits_scaling=0.25))


@pytest.mark.parametrize("kind", ["gemma2_softcap", "cohere_logit_scale", "granite_logits_scaling"])
def test_logit_transforms_of_other_families(kind):
    model = _tiny(kind).eval()
    batch = random_batch(model.config.vocab_size, seed=7)
    with torch.no_grad():
        lp = completion_logprobs(model, *_inputs(batch), chunk_size=3)
        logits = model(input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask).logits
        plain = reference_logprobs(
            model.lm_head(
                model.model(
                    input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask
                ).last_hidden_state
            ),
            batch.student_prompt_lens,
            batch.completion_ids,
            batch.completion_mask,
        )
    ref = reference_logprobs(logits, batch.student_prompt_lens, batch.completion_ids, batch.completion_mask)
    assert torch.allclose(lp, ref, atol=1e-5, rtol=0)
    assert (plain - ref).abs().max() > 1e-3, "the transform must matter for this test to mean anything"


def test_misaligned_inputs_are_rejected(tiny_model):
    batch = random_batch(tiny_model.config.vocab_size)
    wrong = batch.completion_ids.clone()
    wrong[0, 0] = (wrong[0, 0] + 1) % tiny_model.config.vocab_size
    with pytest.raises(ValueError, match="misaligned"):
        completion_logprobs(
            tiny_model,
            batch.student_input_ids,
            batch.student_attention_mask,
            batch.student_prompt_lens,
            wrong,
            batch.completion_mask,
        )
    with pytest.raises(ValueError, match="bool"):
        completion_logprobs(
            tiny_model,
            batch.student_input_ids,
            batch.student_attention_mask,
            batch.student_prompt_lens,
            batch.completion_ids,
            batch.completion_mask.long(),
        )


def test_no_grad_pass_and_mixture_of_heads(tiny_model):
    batch = random_batch(tiny_model.config.vocab_size, seed=11)
    head = LogitHead.of(tiny_model)
    targets = batch.completion_ids[batch.completion_mask]
    with torch.no_grad():
        hidden = completion_hidden_states(
            tiny_model,
            batch.student_input_ids,
            batch.student_attention_mask,
            batch.student_prompt_lens,
            batch.completion_mask,
        )
        lp = chunked_token_logprobs(hidden, head, targets, chunk_size=2)
        # a mixture 0.3 * head(h) + 0.7 * head(h) is the same distribution
        mix = LogitMixture([(0.3, hidden, head), (0.7, hidden, head.frozen())]).token_logprobs(targets, 3)
        # scaling the logits by 2 is a different one: check against a direct computation
        sharp = LogitMixture([(2.0, hidden, head)]).token_logprobs(targets, 3)
        direct = torch.log_softmax(2.0 * head(hidden), -1).gather(1, targets[:, None]).squeeze(1)
    assert lp.grad_fn is None
    assert torch.allclose(mix, lp, atol=1e-5)
    assert torch.allclose(sharp, direct, atol=1e-5)
    empty = chunked_token_logprobs(hidden[:0], head, targets[:0])
    assert empty.shape == (0,)


@pytest.mark.parametrize(("scale", "softcap"), [(1.0, None), (0.7, None), (1.3, 2.5)])
def test_fused_head_gradients_match_autograd(scale, softcap):
    from sdpo_exp.sdpo.fused_head import linear_token_logprobs

    g = torch.Generator().manual_seed(0)
    h = torch.randn(11, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(17, 6, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(17, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randint(0, 17, (11,), generator=g)
    weights = torch.randn(11, dtype=torch.float64, generator=g)
    (linear_token_logprobs(h, w, b, t, 4, scale, softcap) * weights).sum().backward()
    fused = [x.grad.clone() for x in (h, w, b)]
    for x in (h, w, b):
        x.grad = None
    z = (h @ w.T + b) * scale
    if softcap is not None:
        z = torch.tanh(z / softcap) * softcap
    (torch.log_softmax(z, -1).gather(1, t[:, None]).squeeze(1) * weights).sum().backward()
    for got, x in zip(fused, (h, w, b), strict=True):
        assert torch.allclose(got, x.grad, atol=1e-12)


def test_lora_adapted_lm_head_takes_the_generic_path(tiny_tokenizer):
    from sdpo_exp.config.schemas.loss import PGLossConfig, TeacherConfig, TeacherKind
    from sdpo_exp.errors import ConfigError
    from sdpo_exp.sdpo.objective import SDPOObjective

    torch.manual_seed(0)
    cfg = model_cfg(
        "tiny_random",
        **{
            "lora.enabled": True,
            "lora.r": 2,
            "lora.dropout": 0.0,
            "lora.target_modules": ["q_proj", "lm_head"],
        },
    )
    model = load_model(cfg, CACHE_DIR, tiny_tokenizer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    assert LogitHead.of(model).linear_parts() is None
    batch = random_batch(model.config.vocab_size, seed=13)
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(2))
    (completion_logprobs(model, *_inputs(batch), chunk_size=3) * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    logits = model(input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask).logits
    ref = reference_logprobs(logits, batch.student_prompt_lens, batch.completion_ids, batch.completion_mask)
    (ref * weights).sum().backward()
    assert any("lm_head" in n for n in grads)
    for n, p in model.named_parameters():
        if p.requires_grad:
            # float32 sums in another order (chunked vs whole): 1.1e-5 relative measured with AVX2 kernels,
            # below 1e-5 with AVX-512 ones; a wrong path is off by orders of magnitude more
            assert float((grads[n] - p.grad).abs().max()) <= 5e-5 * float(p.grad.abs().max()) + 1e-7, n
    # a teacher with other weights cannot capture an adapted head: a clear config error
    with pytest.raises(ConfigError, match="LoRA"):
        SDPOObjective(model, PGLossConfig(teacher=TeacherConfig(kind=TeacherKind.base)))
    assert torch.isfinite(SDPOObjective(model, PGLossConfig())(batch).loss)
