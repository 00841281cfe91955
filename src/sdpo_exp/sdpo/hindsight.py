"""Hindsight (teacher) contexts: x with the user's follow-up o appended to the last user message.

The student sees x; the teacher sees (x, o). Both are the same chat, except that the last user
message of the teacher's copy carries a hindsight block built from a template with a ``{followup}``
placeholder. Inputs that cannot make a sensible pair raise `SkipInteraction` with a reason, so that
callers count them instead of crashing or silently changing the data.
"""

from __future__ import annotations

import copy
import logging
from enum import Enum
from typing import Any

from sdpo_exp.errors import ConfigError
from sdpo_exp.interaction import ROLES

log = logging.getLogger(__name__)

PLACEHOLDER = "{followup}"

# Each text is appended as is to the content of the last user message; `{followup}` becomes o.
TEMPLATES: dict[str, str] = {
    # Paper, Table 1.
    "paper": (
        "\n\n<hindsight context> The following is a future user message. "
        "Use this to guide your answer to the user prompt: {followup}"
    ),
    # The authors' online trainer.
    "online_v1": (
        "\n\n=== HINDSIGHT CONTEXT ===\n"
        "[The following is a future user message. Use this to guide your answer to the user prompt.]\n"
        "{followup}"
    ),
    # The authors' offline trainer and signal analysis (the WildFeedback results).
    "offline_v1": (
        "\n\n[HINDSIGHT CONTEXT]\n"
        "The following is a user response to your previous, insufficient attempt. "
        "Improve your response to the user prompt.\n"
        "Future User Message: {followup}"
    ),
}

# Templates whose follow-up is inserted stripped of surrounding whitespace (the others insert it as is).
_STRIPPED = {"paper", "online_v1"}

SKIP_REASONS = (
    "empty_followup",  # o is empty or whitespace only
    "no_user_message",  # x has no user message (or is empty)
    "ends_with_assistant",  # x ends with an assistant message: y would not answer the user
    "empty_completion",  # y has no tokens
    "prompt_too_long",  # even the last user message alone (plus a leading system one) is too long
    "invalid_message",  # a message that is not {role: system|user|assistant, content: str}
)


class SkipInteraction(Exception):
    """An interaction that cannot be used; `reason` is one of `SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; expected one of {SKIP_REASONS}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _value(field: Any) -> Any:
    return field.value if isinstance(field, Enum) else field


def template_text(cfg: Any, warn: bool = True) -> str:
    """The template string that `cfg` (a HindsightConfig or its DictConfig) selects."""
    name = str(_value(cfg.template))
    if name == "custom":
        custom = getattr(cfg, "custom", None)
        if custom is None:
            raise ConfigError("hindsight.template=custom needs hindsight.custom='...{followup}...'")
        if PLACEHOLDER not in custom and warn:
            log.warning(
                "hindsight.custom has no %s placeholder: the teacher context will not contain the "
                "follow-up (only useful as a control, e.g. to check that A = 0)",
                PLACEHOLDER,
            )
        return str(custom)
    if name not in TEMPLATES:
        raise ConfigError(f"unknown hindsight template {name!r}; choose one of {[*TEMPLATES, 'custom']}")
    return TEMPLATES[name]


def hindsight_block(followup: str, cfg: Any) -> str:
    """The text appended to the last user message for follow-up `followup`."""
    if not isinstance(followup, str) or not followup.strip():
        raise SkipInteraction("empty_followup")
    text = template_text(cfg, warn=False)
    name = str(_value(cfg.template))
    inserted = followup.strip() if name in _STRIPPED else followup
    # str.replace, not str.format: templates and follow-ups may contain other braces.
    return text.replace(PLACEHOLDER, inserted)


def validate_context(context: Any) -> int:
    """Check that x is usable as a student context; return the index of its last user message."""
    if not isinstance(context, list | tuple):
        raise SkipInteraction("invalid_message", "context is not a list of messages")
    last_user = -1
    for i, message in enumerate(context):
        if not isinstance(message, dict):
            raise SkipInteraction("invalid_message", f"message {i} is not a mapping")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise SkipInteraction(
                "invalid_message", f"message {i} has role {role!r}, content {type(content)}"
            )
        if role == "user":
            last_user = i
    if last_user < 0:
        raise SkipInteraction("no_user_message")
    if context[-1]["role"] == "assistant":
        raise SkipInteraction("ends_with_assistant")
    return last_user


def teacher_context(context: list[dict], followup: str, cfg: Any) -> list[dict]:
    """A copy of x with the hindsight block appended to its last user message.

    Raises `SkipInteraction` for an unusable context or follow-up; `context` is never modified.
    """
    last_user = validate_context(context)
    block = hindsight_block(followup, cfg)
    messages = copy.deepcopy(list(context))
    messages[last_user]["content"] = messages[last_user]["content"] + block
    return messages
