"""Sampling completions from the policy (transformers backend)."""

from sdpo_exp.generation.hf import (
    Sample,
    eos_token_ids,
    hf_generation_config,
    render_prompts,
    sample_completions,
)

__all__ = ["Sample", "eos_token_ids", "hf_generation_config", "render_prompts", "sample_completions"]
