"""The OpenAI chat-completions wire format: requests checked field by field, errors in OpenAI's shape.

A request that does not fit is refused with an `ApiError` (a 4xx status and one sentence naming the
field) before anything is generated or logged. Supported: `messages` (roles system, developer (as
system), user and assistant; string content or a list of text parts), `model` (echoed), `temperature`
(0: greedy), `top_p`, `max_tokens` / `max_completion_tokens` (capped to `task.max_tokens`), `stream`
(the whole reply in one chunk, then `[DONE]`), `n` = 1, `user`. Other OpenAI fields are accepted and
ignored (named in the log); fields that would change the result and cannot be honoured (`n` > 1,
tools, a non-text content part) are refused.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Fields whose presence (with a value other than null or empty) asks for something this server cannot do.
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "logit_bias", "response_format", "audio")
# Values of those fields that ask for nothing (what clients send by default).
HARMLESS: dict[str, tuple[Any, ...]] = {"tool_choice": (None, "none", "auto"), "function_call": (None, "none", "auto"),
                                       "response_format": (None, {"type": "text"})}  # fmt: skip
IGNORED_OK = ("model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stream",
              "n", "user", "stream_options", "seed", "stop", "presence_penalty", "frequency_penalty",
              "metadata", "store", "parallel_tool_calls", "logprobs", "top_logprobs", "service_tier")  # fmt: skip


class ApiError(Exception):
    """A request refused with `status` and OpenAI's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]  # normalised: roles system/user/assistant, string contents
    max_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    stream: bool = False
    model: str | None = None
    user: str | None = None
    ignored: list[str] = field(default_factory=list)
    capped_from: int | None = None  # the max_tokens asked for, when above the cap
    prompt_tokens: int = 0  # of the rendered conversation (set when the server checks its length)

    def sampling(self, top_k: int) -> dict[str, Any]:
        """The generation settings `sample_completions` takes."""
        return {"do_sample": self.do_sample, "temperature": self.temperature if self.do_sample else 1.0,
                "top_p": self.top_p if self.do_sample else 1.0, "top_k": top_k if self.do_sample else 0,
                "max_new_tokens": self.max_tokens, "batch_size": 1}  # fmt: skip


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f"'{key}' must be a number, got {json.dumps(value)[:40]}", key)
    if not low <= value <= high:
        raise ApiError(400, f"'{key}' must be in [{low:g}, {high:g}], got {value}", key)
    return float(value)


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise ApiError(400, f"messages[{index}].content[{j}]: only text parts are supported",
                               f"messages[{index}].content")  # fmt: skip
            texts.append(part["text"])
        return "".join(texts)
    if content is None:
        raise ApiError(400, f"messages[{index}] has no 'content'", f"messages[{index}].content")
    raise ApiError(400, f"messages[{index}].content must be a string or a list of text parts",
                   f"messages[{index}].content")  # fmt: skip


def _messages(body: dict, max_messages: int) -> list[dict[str, str]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    if len(raw) > max_messages:
        raise ApiError(400, f"too many messages: {len(raw)} > {max_messages}", "messages")
    out = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise ApiError(
                400, f"messages[{i}] must be an object with 'role' and 'content'", f"messages[{i}]"
            )
        role = message.get("role")
        if role not in ROLE_ALIASES:
            raise ApiError(400, f"messages[{i}].role must be one of system, developer, user, assistant; "
                           f"got {json.dumps(role)[:40]}", f"messages[{i}].role")  # fmt: skip
        if message.get("tool_calls"):
            raise ApiError(400, f"messages[{i}]: tool calls are not supported", f"messages[{i}].tool_calls")
        out.append({"role": ROLE_ALIASES[role], "content": _content(message, i)})
    if out[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's (the reply answers it)", "messages")
    return out


def parse_chat_request(raw: bytes, max_tokens_cap: int, default_max_tokens: int, max_messages: int,
                       default_temperature: float, default_top_p: float) -> ChatRequest:  # fmt: skip
    """The checked request, or ApiError (400) naming the first field that does not fit."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for key in UNSUPPORTED:
        if body.get(key) not in HARMLESS.get(key, (None, [], {})):
            raise ApiError(400, f"'{key}' is not supported by this server", key)
    n = body.get("n")
    if n is not None and n != 1:
        raise ApiError(400, "'n' must be 1: this server returns one choice", "n")
    messages = _messages(body, max_messages)
    temperature = _number(body, "temperature", default_temperature, 0.0, 2.0)
    top_p = _number(body, "top_p", default_top_p, 0.0, 1.0)
    if top_p == 0.0:
        raise ApiError(400, "'top_p' must be > 0", "top_p")
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
        raise ApiError(
            400, f"'max_tokens' must be an integer >= 1, got {json.dumps(asked)[:40]}", "max_tokens"
        )
    wanted = int(asked) if asked is not None else default_max_tokens
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", "stream")
    model, user = body.get("model"), body.get("user")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", "model")
    return ChatRequest(
        messages=messages, max_tokens=min(wanted, max_tokens_cap), do_sample=temperature > 0,
        temperature=temperature, top_p=top_p, stream=stream, model=model,
        user=user if isinstance(user, str) else None,
        ignored=sorted(k for k in body if k not in IGNORED_OK and k not in UNSUPPORTED),
        capped_from=wanted if wanted > max_tokens_cap else None,
    )  # fmt: skip


def completion_body(completion_id: str, model: str, text: str, ended: bool, prompt_tokens: int,
                    completion_tokens: int, created: int | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "id": completion_id, "object": "chat.completion", "created": created or int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop" if ended else "length", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }  # fmt: skip


def stream_events(body: dict[str, Any]) -> list[str]:
    """A finished completion as server-sent events: the role, the whole text, the finish, [DONE]."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    choice = body["choices"][0]
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": choice["message"]["content"]}, None),
              ({}, choice["finish_reason"])]  # fmt: skip
    events = [
        "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": d, "finish_reason": f, "logprobs": None}]},
                              ensure_ascii=False) + "\n\n"
        for d, f in deltas
    ]  # fmt: skip
    return [*events, "data: [DONE]\n\n"]
