"""Sampling completions from the policy (transformers backend); prompts render through `sdpo_exp.chat`."""

from sdpo_exp.generation.hf import Sample, hf_generation_config, sample_completions

__all__ = ["Sample", "hf_generation_config", "sample_completions"]
