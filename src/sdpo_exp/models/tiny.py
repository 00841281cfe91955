"""A tiny randomly initialised Qwen3 causal LM built in code, for fast tests.

Its tokenizer is the real SmolLM2 tokenizer (from the packaged checkpoint) with a Qwen3-style chat
template, so tokenisation and chat rendering are those of a real model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from sdpo_exp.config.schemas.model import GgufPackageConfig, TinyModelConfig
from sdpo_exp.models.chat_templates import QWEN3_STYLE
from sdpo_exp.models.gguf_package import ensure_checkpoint


def tiny_tokenizer(cache_dir: str | Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_checkpoint(GgufPackageConfig(), cache_dir))
    tokenizer.chat_template = QWEN3_STYLE
    return tokenizer


def tiny_model(
    spec: TinyModelConfig, tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype
) -> PreTrainedModel:
    """Build the model; weights come from torch's RNG, so seed before calling for reproducibility."""
    config = Qwen3Config(
        vocab_size=spec.vocab_size or len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen3ForCausalLM(config).to(dtype)
