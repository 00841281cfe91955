"""A logged conversation -> (x, y, o) interactions, with the authors' filters and history rule.

With `clean_first` (the authors' WildChat script) every message is stripped and empty messages and
unknown roles are removed before anything else (:func:`clean_messages`). Conversation filters (whole
conversation dropped, counted by reason): fewer than `min_messages` messages, more than
`max_total_chars` characters in total, an assistant message longer than `max_assistant_chars`, a user
message longer than `max_user_chars`. Split rule: every assistant message immediately followed by a
user message gives one interaction (y = that assistant message, o = the user message after it). Its
history x is the messages before y with empty messages and unknown roles removed, cut to the last
`history_messages` messages, with leading assistant messages dropped and runs of same-role messages
treated as `same_role_runs` says; it must then contain a user message and end with one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sdpo_exp.interaction import Interaction

ROLE_NAMES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}

CONVERSATION_REASONS = ("malformed", "too_few_messages", "too_long", "assistant_too_long", "user_too_long")
INTERACTION_REASONS = ("empty_completion", "empty_followup", "no_user_message", "ends_with_assistant",
                       "ends_with_system")  # fmt: skip


@dataclass(frozen=True)
class ConversationRules:
    min_messages: int = 3
    max_total_chars: int = 100_000
    max_assistant_chars: int = 4096
    max_user_chars: int | None = None
    clean_first: bool = False
    history_messages: int = 5
    same_role_runs: str = "merge"  # first | merge | keep


@dataclass(frozen=True)
class Message:
    role: str | None  # None: a role this project does not know (kept for counting, never used)
    content: str
    source_role: str = ""


@dataclass
class SplitResult:
    interactions: list[Interaction] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # interaction-level reasons
    # messages of the conversation that no history uses: empty, unknown_role
    messages_removed: Counter = field(default_factory=Counter)
    final_assistant: int = 0  # assistant messages with no follow-up (not interactions)
    same_role_histories: int = 0  # interactions whose x had consecutive same-role messages


class MalformedConversation(ValueError):
    pass


def parse_messages(raw: Any, role_key: str, content_key: str) -> list[Message]:
    """A raw message list (ShareGPT `from/value` or `role/content`) -> messages with our role names."""
    if not isinstance(raw, (list, tuple)):
        raise MalformedConversation(f"messages are {type(raw).__name__}, expected a list")
    messages = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise MalformedConversation(f"message {i} is {type(item).__name__}, expected an object")
        role, content = item.get(role_key), item.get(content_key)
        if content is None:
            content = ""
        if not isinstance(role, str) or not isinstance(content, str):
            raise MalformedConversation(f"message {i} has no string '{role_key}' / '{content_key}'")
        messages.append(Message(ROLE_NAMES.get(role.strip().lower()), content, role))
    return messages


def clean_messages(messages: list[Message]) -> tuple[list[Message], Counter]:
    """Every message stripped; empty messages and unknown roles removed (and counted)."""
    removed: Counter = Counter()
    cleaned = []
    for m in messages:
        if m.role is None:
            removed["unknown_role"] += 1
        elif not m.content.strip():
            removed["empty"] += 1
        else:
            cleaned.append(Message(m.role, m.content.strip(), m.source_role))
    return cleaned, removed


def conversation_drop_reason(messages: list[Message], rules: ConversationRules) -> str | None:
    """The reason the whole conversation is dropped, or None to keep it."""
    if len(messages) < rules.min_messages:
        return "too_few_messages"
    if sum(len(m.content) for m in messages) > rules.max_total_chars:
        return "too_long"
    if any(m.role == "assistant" and len(m.content) > rules.max_assistant_chars for m in messages):
        return "assistant_too_long"
    if rules.max_user_chars is not None and any(
        m.role == "user" and len(m.content) > rules.max_user_chars for m in messages
    ):
        return "user_too_long"
    return None


def _collapse_runs(history: list[Message], mode: str) -> list[Message]:
    """Consecutive messages with the same role: keep the first, merge them, or keep them all."""
    if mode == "keep":
        return history
    out: list[Message] = []
    for m in history:
        if out and out[-1].role == m.role:
            if mode == "merge":
                out[-1] = Message(m.role, f"{out[-1].content}\n\n{m.content}", out[-1].source_role)
            continue
        out.append(m)
    return out


def _truncated_history(messages: list[Message], index: int, rules: ConversationRules) -> list[Message]:
    history = [m for m in messages[:index] if m.role is not None and m.content.strip()]
    history = history[-rules.history_messages :] if rules.history_messages > 0 else history
    while history and history[0].role == "assistant":
        history = history[1:]
    return history


def _has_same_role_run(history: list[Message]) -> bool:
    return any(a.role == b.role for a, b in zip(history, history[1:], strict=False))


def history_before(messages: list[Message], index: int, rules: ConversationRules) -> list[Message]:
    """x for the assistant message at `index`: the cleaned, truncated history before it."""
    return _collapse_runs(_truncated_history(messages, index, rules), rules.same_role_runs)


def _history_problem(history: list[Message]) -> str | None:
    if not any(m.role == "user" for m in history):
        return "no_user_message"
    if history[-1].role == "assistant":
        return "ends_with_assistant"
    if history[-1].role == "system":
        return "ends_with_system"
    return None


def split_conversation(
    messages: list[Message],
    conversation_id: str,
    rules: ConversationRules,
    meta: dict[str, Any] | None = None,
) -> SplitResult:
    """Every assistant message followed by a user message -> one interaction (or a counted drop)."""
    result = SplitResult()
    result.messages_removed["unknown_role"] = sum(m.role is None for m in messages)
    result.messages_removed["empty"] = sum(m.role is not None and not m.content.strip() for m in messages)
    result.messages_removed += Counter()  # drop zero counts
    turn = 0
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        turn += 1
        following = messages[index + 1] if index + 1 < len(messages) else None
        if following is None or following.role != "user":
            result.final_assistant += 1
            continue
        truncated = _truncated_history(messages, index, rules)
        history = _collapse_runs(truncated, rules.same_role_runs)
        if not message.content.strip():
            result.dropped["empty_completion"] += 1
            continue
        if not following.content.strip():
            result.dropped["empty_followup"] += 1
            continue
        problem = _history_problem(history)
        if problem:
            result.dropped[problem] += 1
            continue
        result.same_role_histories += _has_same_role_run(truncated)
        result.interactions.append(
            Interaction(
                context=[{"role": m.role, "content": m.content} for m in history],
                completion=message.content,
                followup=following.content,
                id=f"{conversation_id}-{turn}",
                conversation_id=conversation_id,
                turn=turn,
                meta=dict(meta or {}),
            )
        )
    return result
