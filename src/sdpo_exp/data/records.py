"""One interaction record (a parsed JSON object) -> :class:`Interaction`, or the reason it is bad.

Two forms are accepted:

- ours: ``context`` (list of ``{role, content}``, roles system/user/assistant), ``completion`` and
  ``followup`` (strings), optional ``id``, ``conversation_id``, ``turn``, ``completion_ids``,
  ``completion_ended``, ``completion_logprobs`` (aligned with ``completion_ids``), ``meta``; any
  other key is kept as source metadata in ``meta``;
- the authors': ``prompt`` (list of ``{from, value}`` with human/gpt/system), ``completion`` and
  ``user_response`` (``{from, value}`` or a plain string).
"""

from __future__ import annotations

from typing import Any

from sdpo_exp.interaction import ROLES, Interaction

# The authors' role names (ShareGPT style) and ours.
AUTHOR_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}

OUR_KEYS = {"id", "conversation_id", "turn", "context", "completion", "followup", "completion_ids",
            "completion_ended", "completion_logprobs", "meta"}  # fmt: skip
AUTHOR_KEYS = {"prompt", "completion", "user_response"}

# Every reason a record can be rejected for, in the order they are checked.
RECORD_REASONS = (
    "blank_line",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unknown_role",
    "empty_message",
    "no_user_message",
    "ends_with_assistant",
    "ends_with_system",
    "empty_completion",
    "empty_followup",
    "too_long",
)


class BadRecord(Exception):
    """A record that cannot be used. `reason` is one of RECORD_REASONS; `detail` says what exactly."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _require(obj: dict, key: str) -> Any:
    if key not in obj or obj[key] is None:
        raise BadRecord("missing_field", f"no '{key}'")
    return obj[key]


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRecord("wrong_type", f"{what} is {type(value).__name__}, expected a string")
    return value


def _optional_id(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecord("wrong_type", f"{key} is {type(value).__name__}, expected a string or an integer")
    return str(value)


def _our_messages(context: Any) -> list[dict[str, str]]:
    if not isinstance(context, list):
        raise BadRecord("wrong_type", f"context is {type(context).__name__}, expected a list of messages")
    messages = []
    for i, message in enumerate(context):
        if not isinstance(message, dict):
            raise BadRecord("wrong_type", f"context[{i}] is {type(message).__name__}, expected an object")
        if "role" not in message or "content" not in message:
            raise BadRecord("missing_field", f"context[{i}] needs 'role' and 'content'")
        role = _string(message["role"], f"context[{i}].role")
        if role not in ROLES:
            raise BadRecord("unknown_role", f"context[{i}].role is '{role}'")
        messages.append({"role": role, "content": _string(message["content"], f"context[{i}].content")})
    return messages


def _author_message(value: Any, what: str) -> tuple[str | None, str]:
    """A `{from, value}` message (or a plain string) -> (our role or None, text)."""
    if isinstance(value, str):
        return None, value
    if not isinstance(value, dict):
        raise BadRecord("wrong_type", f"{what} is {type(value).__name__}, expected {{from, value}}")
    if "value" not in value:
        raise BadRecord("missing_field", f"{what} has no 'value'")
    text = _string(value["value"], f"{what}.value")
    source_role = value.get("from")
    if source_role is None:
        return None, text
    source_role = _string(source_role, f"{what}.from")
    if source_role.lower() not in AUTHOR_ROLES:
        raise BadRecord("unknown_role", f"{what}.from is '{source_role}'")
    return AUTHOR_ROLES[source_role.lower()], text


def _author_messages(prompt: Any) -> list[dict[str, str]]:
    if not isinstance(prompt, list):
        raise BadRecord(
            "wrong_type", f"prompt is {type(prompt).__name__}, expected a list of {{from, value}}"
        )
    messages = []
    for i, message in enumerate(prompt):
        role, text = _author_message(message, f"prompt[{i}]")
        if role is None:
            raise BadRecord("missing_field", f"prompt[{i}] has no 'from'")
        messages.append({"role": role, "content": text})
    return messages


def _check_context(messages: list[dict[str, str]]) -> None:
    for i, message in enumerate(messages):
        if not message["content"].strip():
            raise BadRecord("empty_message", f"context[{i}] ({message['role']}) is empty")
    if not any(m["role"] == "user" for m in messages):
        raise BadRecord("no_user_message", f"context of {len(messages)} messages has no user message")
    last = messages[-1]["role"]
    if last == "assistant":
        raise BadRecord("ends_with_assistant", "the context must end with the user message y answers")
    if last == "system":
        raise BadRecord("ends_with_system", "the context must end with the user message y answers")


def _completion_ids(obj: dict) -> list[int] | None:
    ids = obj.get("completion_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise BadRecord("wrong_type", "completion_ids must be a list of integers")
    return ids


def _completion_logprobs(obj: dict, ids: list[int] | None) -> list[float | None] | None:
    values = obj.get("completion_logprobs")
    if values is None:
        return None
    if not isinstance(values, list) or not all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
    ):
        raise BadRecord("wrong_type", "completion_logprobs must be a list of numbers (null where unknown)")
    if ids is None or len(values) != len(ids):
        raise BadRecord("wrong_type", "completion_logprobs needs completion_ids of the same length")
    return [None if v is None else float(v) for v in values]


def parse_record(obj: Any, max_total_chars: int | None = None) -> Interaction:
    """Validate one decoded JSON value and build the interaction; raise BadRecord otherwise."""
    if not isinstance(obj, dict):
        raise BadRecord("not_an_object", f"a JSON {type(obj).__name__}, expected an object")
    if "context" not in obj and "prompt" in obj:
        return _parse_author_form(obj, max_total_chars)
    context = _our_messages(_require(obj, "context"))
    completion = _string(_require(obj, "completion"), "completion")
    followup = _string(_require(obj, "followup"), "followup")
    turn = obj.get("turn")
    if turn is not None and (isinstance(turn, bool) or not isinstance(turn, int)):
        raise BadRecord("wrong_type", f"turn is {type(turn).__name__}, expected an integer")
    ended = obj.get("completion_ended", True)
    if not isinstance(ended, bool):
        raise BadRecord("wrong_type", "completion_ended must be true or false")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise BadRecord("wrong_type", "meta must be an object")
    meta = {**{k: v for k, v in obj.items() if k not in OUR_KEYS}, **meta}
    completion_ids = _completion_ids(obj)
    interaction = Interaction(
        context=context,
        completion=completion,
        followup=followup,
        id=_optional_id(obj, "id"),
        conversation_id=_optional_id(obj, "conversation_id"),
        turn=turn,
        completion_ids=completion_ids,
        completion_ended=ended,
        meta=meta,
        completion_logprobs=_completion_logprobs(obj, completion_ids),
    )
    _check_interaction(interaction, max_total_chars)
    return interaction


def _parse_author_form(obj: dict, max_total_chars: int | None) -> Interaction:
    context = _author_messages(_require(obj, "prompt"))
    completion_role, completion = _author_message(_require(obj, "completion"), "completion")
    if completion_role not in (None, "assistant"):
        raise BadRecord("wrong_type", f"completion is from '{completion_role}', expected gpt/assistant")
    followup_role, followup = _author_message(_require(obj, "user_response"), "user_response")
    if followup_role not in (None, "user"):
        raise BadRecord("wrong_type", f"user_response is from '{followup_role}', expected human/user")
    meta = {k: v for k, v in obj.items() if k not in AUTHOR_KEYS and k not in OUR_KEYS}
    turn = obj.get("turn")
    interaction = Interaction(
        context=context,
        completion=completion,
        followup=followup,
        id=_optional_id(obj, "id"),
        conversation_id=_optional_id(obj, "conversation_id"),
        turn=turn if isinstance(turn, int) and not isinstance(turn, bool) else None,
        meta=meta,
    )
    _check_interaction(interaction, max_total_chars)
    return interaction


def _check_interaction(interaction: Interaction, max_total_chars: int | None) -> None:
    _check_context(interaction.context)
    if not interaction.completion.strip() and not interaction.completion_ids:
        raise BadRecord("empty_completion", "the completion is empty")
    if not interaction.followup.strip():
        raise BadRecord("empty_followup", "the follow-up is empty")
    if max_total_chars is not None:
        total = sum(len(m["content"]) for m in interaction.context)
        total += len(interaction.completion) + len(interaction.followup)
        if total > max_total_chars:
            raise BadRecord("too_long", f"{total} characters > max_total_chars={max_total_chars}")
