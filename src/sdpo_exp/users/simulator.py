"""User simulators: given the user's request and the assistant's reply, the user's next message o.

`followups(requests, replies)` returns one follow-up per reply, or None where none could be obtained
(an API call that failed for good, an empty reply): the caller skips that interaction and counts it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from sdpo_exp.errors import ConfigError
from sdpo_exp.users import rules
from sdpo_exp.users.backends import ChatModel
from sdpo_exp.users.controls import POOLS, ControlSimulator
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.prompts import simulator_messages


class Simulator(Protocol):
    profile: UserProfile

    def followups(self, requests: Sequence[str], replies: Sequence[str]) -> list[str | None]: ...

    def metrics(self) -> dict[str, float]: ...


def _pick(options: Sequence[str], text: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}\x00{text}".encode()).digest()
    return options[digest[0] % len(options)]


def check_rule_profile(profile: UserProfile) -> None:
    if profile.name not in rules.PROFILE_RULES:
        raise ConfigError(
            f"the rule-based user has no rules for profile '{profile.name}'; profiles with rules: "
            f"{', '.join(sorted(rules.PROFILE_RULES))} (or use a model-backed simulator/judge)"
        )


class RuleBasedSimulator:
    """Names what the profile's user dislikes in the reply (at most `max_complaints` problems; with
    `common_rules`, also a reply that repeats itself or opens with an apology), or approves briefly. Deterministic: the phrasing is picked by a hash of the reply."""

    def __init__(self, profile: UserProfile, max_complaints: int = 2, common_rules: bool = True) -> None:
        check_rule_profile(profile)
        if max_complaints < 1:
            raise ConfigError("simulator.max_complaints must be >= 1")
        self.profile, self.max_complaints, self.common = profile, int(max_complaints), bool(common_rules)
        self.counts: Counter[str] = Counter()

    def followup(self, reply: str) -> str:
        broken = rules.broken_rules(self.profile.name, reply, self.common)
        self.counts["calls"] += 1
        if not broken:
            self.counts["approvals"] += 1
            return _pick(rules.APPROVALS, reply, self.profile.name)
        for rule in broken:
            self.counts[f"rule/{rule.name}"] += 1
        return " ".join(_pick(rule.complaints, reply, rule.name) for rule in broken[: self.max_complaints])

    def followups(self, requests: Sequence[str], replies: Sequence[str]) -> list[str | None]:
        return [self.followup(reply) for reply in replies]

    def metrics(self) -> dict[str, float]:
        return dict(self.counts)  # counts stay integers


class PromptedSimulator:
    """A model playing the user with the paper's user-simulator prompt."""

    def __init__(self, profile: UserProfile, chat: ChatModel) -> None:
        self.profile, self.chat = profile, chat

    def followups(self, requests: Sequence[str], replies: Sequence[str]) -> list[str | None]:
        chats = [
            simulator_messages(self.profile.description, q, r) for q, r in zip(requests, replies, strict=True)
        ]
        return self.chat.replies(chats)

    def metrics(self) -> dict[str, float]:
        return self.chat.metrics()


def make_simulator(
    cfg: Any, profile: UserProfile, cache_dir: str, device: Any = None, chat: ChatModel | None = None
) -> Simulator:
    """The simulator a `simulator` config describes, playing `profile`; `chat` shares one loaded model or
    client between the profiles of a schedule."""
    backend = str(getattr(cfg.backend, "value", cfg.backend))
    if backend == "rule_based":
        return RuleBasedSimulator(profile, int(cfg.max_complaints), bool(cfg.get("common_rules", True)))
    if backend in POOLS:
        return ControlSimulator(profile, backend, list(cfg.get("messages") or []))
    from sdpo_exp.users.backends import make_chat_model

    return PromptedSimulator(profile, chat or make_chat_model(cfg, cache_dir, device))
