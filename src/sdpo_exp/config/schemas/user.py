"""Schemas of the ``user_profile``, ``simulator`` and ``judge`` groups (the online setting)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from sdpo_exp.config.registry import schema


@dataclass
class UserProfileConfig:
    name: str = MISSING
    # The style preference the simulated user holds, as the text after "USER PROFILE: ".
    description: str = MISSING


@dataclass
class ApiModelConfig:
    """A model behind the Anthropic Messages API. The key is read from `api_key_env`, never stored."""

    name: str = MISSING
    backend: str = "anthropic"
    model: str = "claude-haiku-4-5-20251001"
    max_tokens: int = 256
    temperature: float = 0.0
    base_url: str | None = None
    api_key_env: str = "ANTHROPIC_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    max_concurrency: int = 8


@dataclass
class LocalModelConfig:
    """A Hugging Face model run in-process (for example the policy's own family, or SmolLM2)."""

    name: str = MISSING
    backend: str = "local"
    path: str = MISSING
    dtype: str = "auto"
    max_new_tokens: int = 256
    temperature: float = 0.0


schema("simulator", "api")(ApiModelConfig)
schema("simulator", "local")(LocalModelConfig)
schema("judge", "api")(ApiModelConfig)
schema("judge", "local")(LocalModelConfig)
