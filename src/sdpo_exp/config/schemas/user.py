"""Schemas of the ``user_profile``, ``simulator`` and ``judge`` groups (the online setting).

A simulator plays the user of `user_profile` (it writes the follow-up o to a reply); a judge, playing
the same user, says which of two replies it prefers. Each runs on one backend: `rule_based` (no
model: deterministic rules per profile), `hf` or `vllm` (a local model with the paper's prompts), or
`anthropic` (Claude through the Messages API with the paper's prompts). A simulator may also be a
control user, `unrelated` or `neutral`, whose follow-ups say nothing about the reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.model import ModelConfig


@dataclass
class UserProfileConfig:
    name: str = MISSING
    # The style preference the simulated user holds, as the text after "USER PROFILE: ".
    description: str = MISSING
    # The profile with the opposite preference (a `user_profile` option), for schedules that flip it.
    opposite: str | None = None


class UserBackend(Enum):
    rule_based = "rule_based"
    hf = "hf"
    vllm = "vllm"
    anthropic = "anthropic"


@dataclass
class RuleBasedUserConfig:
    """Model-free: the profile's rules (`sdpo_exp.users.rules`) decide, deterministically."""

    name: str = "rule_based"
    backend: UserBackend = UserBackend.rule_based
    # The simulator names at most this many of the problems it finds in one follow-up.
    max_complaints: int = 2
    # Besides the profile's rules, those every user holds: a reply that repeats itself or opens with an
    # apology or a refusal is complained about (simulator) and counts as a broken rule (judge).
    common_rules: bool = True


class ControlKind(Enum):
    unrelated = "unrelated"  # a new request on another subject
    neutral = "neutral"  # a content-free acknowledgement ("ok, thanks")


@dataclass
class ControlUserConfig:
    """A control user (simulator only): its follow-up carries no information about the reply
    (`sdpo_exp.users.controls`), so a run with it is the control of the same run with a real user."""

    name: str = MISSING
    backend: ControlKind = MISSING
    # The messages to draw from; empty: the project's pool for `backend`.
    messages: list[str] = field(default_factory=list)


@dataclass
class LocalUserConfig:
    """A local model (not the policy) with the paper's prompt, through the hf or vllm backend."""

    name: str = MISSING
    backend: UserBackend = UserBackend.hf
    model: ModelConfig = field(default_factory=ModelConfig)
    max_new_tokens: int = 256
    # 0: greedy decoding (the paper's setting); > 0: sampling at this temperature.
    temperature: float = 0.0
    batch_size: int = 8


@dataclass
class AnthropicUserConfig:
    """Claude through the Messages API. The key is read from $`api_key_env`, never stored."""

    name: str = MISSING
    backend: UserBackend = UserBackend.anthropic
    model: str = "claude-haiku-4-5-20251001"
    max_tokens: int = 256
    # Sent as the request body's `temperature` (the SDK has no argument for it); null leaves it out.
    temperature: float | None = 0.0
    base_url: str | None = None  # another endpoint speaking the Messages API (a proxy, a test server)
    api_key_env: str = "ANTHROPIC_API_KEY"
    timeout_s: float = 60.0
    # 429, 408, 409, 5xx, 529, timeouts and malformed replies are retried this many times, with
    # exponential backoff (base * 2^attempt, jittered, at most backoff_max_s) or `retry-after`.
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_concurrency: int = 8
    # A call that still fails is skipped and counted; the run stops when more than this share fail.
    max_failure_rate: float = 0.2


for _group in ("simulator", "judge"):
    schema(_group, "rule_based")(RuleBasedUserConfig)
    schema(_group, "local")(LocalUserConfig)
    schema(_group, "anthropic")(AnthropicUserConfig)
schema("simulator", "control")(ControlUserConfig)
