"""Helpers shared by the SDPO-core tests: random conversations and brute-force references."""

from __future__ import annotations

import random

import torch

from sdpo_exp.interaction import Interaction

PIECES = [
    "Hello",
    "How do I sort a list in Python?",
    "Grüße aus Köln – schön!",
    "数学の問題を解いてください。",
    "Привет, как дела?",
    "emoji 😀🎉👍🏽 and ZWJ 👩‍💻",
    "{followup} {0} {} }{ braces",
    "line one\nline two\n\n  indented\ttab",
    "   leading and trailing spaces   ",
    "<b>html</b> & `code` | pipes | **bold**",
    "a" * 50,
    "",
]


def random_text(rng: random.Random, long: bool = False) -> str:
    words = [rng.choice(PIECES) for _ in range(rng.randint(1, 4))]
    text = " ".join(words)
    if long:
        text = (text + " ") * rng.randint(40, 120)
    return text


def random_context(rng: random.Random) -> list[dict[str, str]]:
    """A valid x: optional system message, alternating turns, ending with a user message."""
    messages = []
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": random_text(rng)})
    turns = rng.choice([0, 0, 1, 2, 4])  # previous (user, assistant) exchanges; 0 = empty history
    for _ in range(turns):
        messages.append({"role": "user", "content": random_text(rng, long=rng.random() < 0.15)})
        messages.append({"role": "assistant", "content": random_text(rng, long=rng.random() < 0.15)})
    messages.append({"role": "user", "content": random_text(rng, long=rng.random() < 0.1) or "?"})
    return messages


def random_interaction(rng: random.Random, index: int) -> Interaction:
    completion = random_text(rng, long=rng.random() < 0.1).strip() or "ok"
    followup = rng.choice(PIECES[:-1]).strip() or "thanks"
    return Interaction(
        context=random_context(rng),
        completion=completion,
        followup=followup,
        id=f"r{index}",
        completion_ended=rng.random() < 0.8,
    )


def reference_logprobs(
    logits: torch.Tensor, prompt_lens: torch.Tensor, completion_ids: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Plain full-vocabulary log_softmax over (B, S, V) logits, gathered at completion positions."""
    logp = torch.log_softmax(logits.double() if logits.dtype == torch.float64 else logits.float(), dim=-1)
    out = torch.zeros(completion_ids.shape, dtype=logp.dtype)
    for b in range(completion_ids.shape[0]):
        for j in range(completion_ids.shape[1]):
            if mask[b, j]:
                out[b, j] = logp[b, int(prompt_lens[b]) + j - 1, completion_ids[b, j]]
    return out


def tiny_lm(vocab: int, dtype: torch.dtype = torch.float32, seed: int = 0, hidden: int = 32):
    """A very small random Qwen3 causal LM with a vocabulary of `vocab` ids."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        pad_token_id=0,
        attn_implementation="eager",
    )
    model = Qwen3ForCausalLM(config).to(dtype)
    with torch.no_grad():  # larger weights than the default init: sharper, more varied distributions
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.4)
    return model
