"""Linking turns without server-side sessions: a served reply waits until the user answers it.

OpenAI-style clients send the whole conversation with every request. A reply y served for the
messages x is kept as a pending turn under the key of (x, y). When a request arrives whose messages
are (x, y) followed by a user message o, the pending turn becomes the interaction (x, y, o) with the
served token ids, and is no longer pending: a retried request does not log it twice. The book is
rebuilt at start from the run's journals (every served turn from conversations.jsonl, the linked
ones from interactions.jsonl), so that a restarted server still links answers to earlier replies.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from sdpo_exp.interaction import Interaction


def turn_key(messages: list[dict[str, str]]) -> str:
    """The key of a message list (contents compared without surrounding whitespace)."""
    canonical = json.dumps([[m["role"], m["content"].strip()] for m in messages], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class ServedTurn:
    """A reply the server gave: its context x, text and exact token ids."""

    completion_id: str
    conversation_id: str
    turn: int
    context: list[dict[str, str]]
    completion: str
    completion_ids: list[int]
    completion_ended: bool
    completion_logprobs: list[float | None] | None = None
    weights_version: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return turn_key([*self.context, {"role": "assistant", "content": self.completion}])

    def interaction(self, followup: str) -> Interaction:
        return Interaction(
            context=self.context, completion=self.completion, followup=followup, id=self.completion_id,
            conversation_id=self.conversation_id, turn=self.turn, completion_ids=list(self.completion_ids),
            completion_ended=self.completion_ended, completion_logprobs=self.completion_logprobs,
            meta={"completion_id": self.completion_id, "weights_version": self.weights_version, **self.meta},
        )  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        return {"completion_id": self.completion_id, "conversation_id": self.conversation_id, "turn": self.turn,
                "context": self.context, "completion": self.completion, "completion_ids": self.completion_ids,
                "completion_ended": self.completion_ended, "completion_logprobs": self.completion_logprobs,
                "weights_version": self.weights_version}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ServedTurn:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record and k != "meta"})


class TurnBook:
    """Served turns by key; which have been answered. Thread-safe."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[ServedTurn]] = {}
        self._by_id: dict[str, ServedTurn] = {}
        self._linked: dict[str, str] = {}  # answered turns: completion id -> the follow-up
        self._lock = threading.Lock()

    def add(self, turn: ServedTurn) -> None:
        with self._lock:
            self._by_key.setdefault(turn.key, []).append(turn)
            self._by_id[turn.completion_id] = turn

    def mark_linked(self, completion_id: str, followup: str) -> None:
        with self._lock:
            self._linked[completion_id] = followup

    def previous(self, messages: list[dict[str, str]]) -> ServedTurn | None:
        """The served turn these messages continue (x, y, ...), answered or not; the latest if several."""
        if len(messages) < 2 or messages[-2]["role"] != "assistant":
            return None
        with self._lock:
            found = self._by_key.get(turn_key(messages[:-1]))
            return found[-1] if found else None

    def claim(self, messages: list[dict[str, str]]) -> ServedTurn | None:
        """The pending turn that the last (user) message of `messages` answers, marked answered; None
        when there is none (a new conversation, a turn answered before, a reply this server did not give)."""
        if len(messages) < 3 or messages[-1]["role"] != "user" or messages[-2]["role"] != "assistant":
            return None
        with self._lock:
            for turn in reversed(self._by_key.get(turn_key(messages[:-1]), [])):
                if turn.completion_id not in self._linked:
                    self._linked[turn.completion_id] = messages[-1]["content"]
                    return turn
        return None

    def get(self, completion_id: str) -> ServedTurn | None:
        with self._lock:
            return self._by_id.get(completion_id)

    def followup(self, completion_id: str) -> str | None:
        """The user's answer to the turn, or None while it is pending."""
        with self._lock:
            return self._linked.get(completion_id)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._by_id.keys() - self._linked.keys())
