"""Pairwise judges playing a user profile: which of two replies to a request that user prefers.

`compare(requests, replies_a, replies_b)` returns the judge's raw replies (one per pair); the strict
parsing into A, B, tie or invalid, and the win rate over both orders, are `evaluation.winrate`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from sdpo_exp.users import rules
from sdpo_exp.users.backends import ChatModel
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.prompts import judge_messages
from sdpo_exp.users.simulator import check_rule_profile


class Judge(Protocol):
    profile: UserProfile

    def compare(
        self, requests: Sequence[str], replies_a: Sequence[str], replies_b: Sequence[str]
    ) -> list[str | None]: ...

    def metrics(self) -> dict[str, float]: ...


class RuleBasedJudge:
    """Prefers the reply that breaks fewer of the profile's rules (with `common_rules`, also those every
    user holds: no repetition, no opening apology); C when both break as many."""

    def __init__(self, profile: UserProfile, common_rules: bool = True) -> None:
        check_rule_profile(profile)
        self.profile, self.common = profile, bool(common_rules)
        self.counts: Counter[str] = Counter()

    def verdict(self, reply_a: str, reply_b: str) -> str:
        a = len(rules.broken_rules(self.profile.name, reply_a, self.common))
        b = len(rules.broken_rules(self.profile.name, reply_b, self.common))
        self.counts["calls"] += 1
        return "A" if a < b else "B" if b < a else "C"

    def compare(
        self, requests: Sequence[str], replies_a: Sequence[str], replies_b: Sequence[str]
    ) -> list[str | None]:
        return [self.verdict(a, b) for a, b in zip(replies_a, replies_b, strict=True)]

    def metrics(self) -> dict[str, float]:
        return dict(self.counts)  # counts stay integers


class PromptedJudge:
    """A model judging with the paper's judge prompt."""

    def __init__(self, profile: UserProfile, chat: ChatModel) -> None:
        self.profile, self.chat = profile, chat

    def compare(
        self, requests: Sequence[str], replies_a: Sequence[str], replies_b: Sequence[str]
    ) -> list[str | None]:
        chats = [
            judge_messages(self.profile.description, q, a, b)
            for q, a, b in zip(requests, replies_a, replies_b, strict=True)
        ]
        return self.chat.replies(chats)

    def metrics(self) -> dict[str, float]:
        return self.chat.metrics()


def make_judge(
    cfg: Any, profile: UserProfile, cache_dir: str, device: Any = None, chat: ChatModel | None = None
) -> Judge:
    """The judge a `judge` config describes, playing `profile`; `chat` shares one loaded model or
    client between the profiles of a schedule."""
    backend = str(getattr(cfg.backend, "value", cfg.backend))
    if backend == "rule_based":
        return RuleBasedJudge(profile, bool(cfg.get("common_rules", True)))
    from sdpo_exp.users.backends import make_chat_model

    return PromptedJudge(profile, chat or make_chat_model(cfg, cache_dir, device))
