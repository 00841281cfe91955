"""Schema of the ``generation`` group: how completions are sampled from a policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class GenerationBackend(Enum):
    hf = "hf"  # transformers generate()
    vllm = "vllm"  # needs the `vllm` extra


@dataclass
class VLLMOptions:
    """Engine settings of the `vllm` backend."""

    dtype: str = "auto"
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.3  # the share of the GPU the engine may take beside training
    enable_sleep_mode: bool = False  # GPU only: free the engine's memory while training


@dataclass
class GenerationConfig:
    backend: GenerationBackend = GenerationBackend.hf
    max_new_tokens: int = 256
    do_sample: bool = True
    # Used exactly as given; the model's own generation_config never overrides them.
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k filtering
    batch_size: int = 8
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
