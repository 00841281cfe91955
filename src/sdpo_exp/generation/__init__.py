"""Sampling completions: one interface (`backend.Generator`) with the `hf` and `vllm` backends;
prompts render through `sdpo_exp.chat`."""

from sdpo_exp.generation.backend import Generator, make_generator
from sdpo_exp.generation.hf import HFGenerator, Sample, hf_generation_config, sample_completions

__all__ = [
    "Generator",
    "HFGenerator",
    "Sample",
    "hf_generation_config",
    "make_generator",
    "sample_completions",
]
