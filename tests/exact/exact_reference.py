"""Independent references for the exactness tests: every loss written out from plain full logits.

Nothing here calls the SDPO core's log-prob, divergence or loss code: the model's own forward gives
(B, S, V) logits, `log_softmax` gives every distribution, and each formula of docs/losses.md is
spelled out again over them.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from sdpo_exp.sdpo.batching import collate_encoded


def large_logit_lm(vocab: int, dtype: torch.dtype = torch.float32, seed: int = 0, head_scale: float = 12.0):
    """A tiny random Qwen3 whose LM head is scaled up: max |logit| well above 25."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=0,
        attn_implementation="eager",
    )
    model = Qwen3ForCausalLM(config).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.4)
        model.lm_head.weight.mul_(head_scale / 0.4 / math.sqrt(32))
    return model


def unequal_batch(vocab: int, completion_lengths: list[int], seed: int = 0, ended: bool = True):
    """Rows with different prompt, follow-up and completion lengths (so every tensor is padded)."""
    rng = random.Random(seed)
    encoded = []
    for i, c_len in enumerate(completion_lengths):
        prompt = [rng.randrange(1, vocab) for _ in range(3 + (i * 5) % 7)]
        followup = [rng.randrange(1, vocab) for _ in range(2 + (i * 3) % 5)]
        completion = [rng.randrange(1, vocab) for _ in range(c_len)]
        encoded.append(
            {
                "student_ids": prompt,
                "teacher_ids": prompt + followup,
                "completion_ids": completion,
                "completion_ended": ended,
            }
        )
    return encoded, collate_encoded(encoded, pad_id=0)


def completion_distributions(model, ids, attention_mask, prompt_lens, width: int) -> torch.Tensor:
    """(B, C, V) float32 log_softmax of the plain logits at the positions predicting each completion
    token (clamped into the sequence for padded positions, which the mask removes)."""
    logits = model(input_ids=ids, attention_mask=attention_mask).logits
    logits = logits.double() if logits.dtype == torch.float64 else logits.float()
    lp = torch.log_softmax(logits, dim=-1)
    cols = (prompt_lens[:, None] + torch.arange(width)[None, :] - 1).clamp(max=ids.shape[1] - 1)
    rows = torch.arange(ids.shape[0])[:, None].expand_as(cols)
    return lp[rows, cols]


def _kl(lp_p: torch.Tensor, lp_q: torch.Tensor) -> torch.Tensor:
    p = lp_p.exp()
    support = p > 0
    return (p * (torch.where(support, lp_p, 0.0) - torch.where(support, lp_q, 0.0))).sum(-1)


def jsd_formula(lp_s: torch.Tensor, lp_t: torch.Tensor, alpha: float) -> torch.Tensor:
    """TRL's convention: m = (1-a) p_s + a p_t; (1-a) KL(s||m) + a KL(t||m); a=0 KL(t||s), a=1 KL(s||t)."""
    if alpha == 0:
        return _kl(lp_t, lp_s)
    if alpha == 1:
        return _kl(lp_s, lp_t)
    p_s, p_t = lp_s.exp(), lp_t.exp()
    m = (1 - alpha) * p_s + alpha * p_t
    return (1 - alpha) * (p_s * (p_s / m).log()).sum(-1) + alpha * (p_t * (p_t / m).log()).sum(-1)


def _topk_with_tail(lp_s: torch.Tensor, lp_t: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = lp_s.detach().topk(k, dim=-1).indices
    s_k, t_k = lp_s.gather(-1, ids), lp_t.gather(-1, ids)
    others = torch.ones_like(lp_s, dtype=torch.bool).scatter(-1, ids, False)
    s_tail = torch.where(others, lp_s, -torch.inf).logsumexp(-1, keepdim=True)
    t_tail = torch.where(others, lp_t, -torch.inf).logsumexp(-1, keepdim=True)
    return torch.cat([s_k, s_tail], -1), torch.cat([t_k, t_tail], -1)


def per_token_values(name: str, cfg: Any, lp_s, lp_t, s, t) -> torch.Tensor:
    if name == "pg":
        return -(t - s).detach() * s
    if name == "sft":
        return -s
    if name == "full_kl":
        return _kl(lp_s, lp_t)
    if name == "topk":
        return _kl(*_topk_with_tail(lp_s, lp_t, int(cfg.k)))
    if name == "jsd":
        if cfg.top_k is not None:
            lp_s, lp_t = _topk_with_tail(lp_s, lp_t, int(cfg.top_k))
        return jsd_formula(lp_s, lp_t, float(cfg.alpha))
    raise ValueError(name)


def teacher_distributions(model, batch, cfg: Any, initial_model=None) -> torch.Tensor:
    """(B, C, V) teacher log-probs on (x, o): the current weights (live), the initial ones (base,
    and ema before any update), or log_softmax((1 - r) z_initial + r z_current) (trust_region)."""
    kind = getattr(cfg.teacher.kind, "value", cfg.teacher.kind)
    args = (batch.teacher_input_ids, batch.teacher_attention_mask, batch.teacher_prompt_lens)
    width = batch.completion_ids.shape[1]
    with torch.no_grad():
        if kind == "live":
            return completion_distributions(model, *args, width)
        if kind in ("base", "ema"):
            return completion_distributions(initial_model, *args, width)
        r = float(cfg.teacher.trust_region_r)
        mixed = (1 - r) * completion_distributions(
            initial_model, *args, width
        ) + r * completion_distributions(
            model, *args, width
        )  # log_softmax shifts each by a constant, which a second log_softmax removes
        return torch.log_softmax(mixed, dim=-1)


def reference_terms(model, batch, cfg: Any, initial_model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sequence numerators (B,), units (B,)) of the loss `cfg` from plain logits; differentiable.

    `initial_model` (a copy of the initial weights) is the base / EMA / trust-region teacher's and
    the k1 penalty's reference: beta * sg(s - r) * s."""
    name = str(cfg.name)
    norm = getattr(cfg.length_norm, "value", cfg.length_norm)
    width = batch.completion_ids.shape[1]
    lp_s = completion_distributions(
        model, batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens, width
    )
    lp_t = teacher_distributions(model, batch, cfg, initial_model)
    targets = batch.completion_ids[..., None]
    s, t = lp_s.gather(-1, targets).squeeze(-1), lp_t.gather(-1, targets).squeeze(-1)
    mask = batch.completion_mask.clone()
    if name == "pg" and int(cfg.ignore_first_k) > 0:
        mask[:, : int(cfg.ignore_first_k)] = False
    values = per_token_values(name, cfg, lp_s, lp_t, s, t)
    if float(cfg.kl_to_ref_beta) > 0:
        with torch.no_grad():
            lp_r = completion_distributions(
                initial_model,
                batch.student_input_ids,
                batch.student_attention_mask,
                batch.student_prompt_lens,
                width,
            )
        r = lp_r.gather(-1, targets).squeeze(-1)
        values = values + float(cfg.kl_to_ref_beta) * (s - r).detach() * s
    values = torch.where(mask, values, torch.zeros_like(values))
    lengths = mask.sum(1).to(values.dtype)
    if norm == "sequence":
        return values.sum(1) / lengths.clamp(min=1), (lengths > 0).to(values.dtype)
    return values.sum(1), lengths


def reference_loss(model, batch, cfg: Any, initial_model=None) -> torch.Tensor:
    """The step loss sum_b n_b / sum_b u_b over one batch."""
    numerators, units = reference_terms(model, batch, cfg, initial_model)
    return numerators.sum() / units.sum().clamp(min=1)


def flat_grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten().double() for p in model.parameters() if p.grad is not None])


# -- the accumulation cases: every loss, both normalisations, unequal lengths -----------------------
ACC_VOCAB = 61
ACC_LENGTHS = [1, 2, 9, 10]  # completion lengths of the step's four sequences


def accumulation_cases() -> dict[str, Any]:
    from sdpo_exp.config.schemas.loss import (
        FullKLLossConfig,
        JSDLossConfig,
        LengthNorm,
        PGLossConfig,
        SFTLossConfig,
        TopKLossConfig,
    )

    plain = {"shared_prefix": False}  # the teacher's plain pass (the default shares the prefix)
    makers = {
        "pg": lambda n: PGLossConfig(chunk_size=4, length_norm=n, **plain),
        "pg_ignore2": lambda n: PGLossConfig(chunk_size=4, length_norm=n, ignore_first_k=2, **plain),
        "sft": lambda n: SFTLossConfig(chunk_size=4, length_norm=n),
        "full_kl": lambda n: FullKLLossConfig(chunk_size=4, length_norm=n, **plain),
        "topk": lambda n: TopKLossConfig(chunk_size=4, length_norm=n, k=6, **plain),
        "jsd": lambda n: JSDLossConfig(chunk_size=4, length_norm=n, alpha=0.1, **plain),
        # the teacher reusing the student's keys/values of the shared prompt (rows' prefixes differ)
        "pg_shared": lambda n: PGLossConfig(chunk_size=4, length_norm=n, shared_prefix=True),
        "topk_shared": lambda n: TopKLossConfig(chunk_size=4, length_norm=n, k=6, shared_prefix=True),
    }
    return {f"{name}-{norm.value}": make(norm) for name, make in makers.items() for norm in LengthNorm}


def accumulation_model():
    return large_logit_lm(ACC_VOCAB, torch.float64, seed=5, head_scale=4.0)


def accumulation_rows() -> list[dict]:
    encoded, _ = unequal_batch(ACC_VOCAB, ACC_LENGTHS, seed=6)
    return encoded
