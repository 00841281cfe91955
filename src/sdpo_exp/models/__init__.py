"""Model and tokenizer loading: hub presets, the packaged SmolLM2, a tiny random Qwen3."""

from sdpo_exp.models.loader import load_model, load_tokenizer, resolve_dtype

__all__ = ["load_model", "load_tokenizer", "resolve_dtype"]
