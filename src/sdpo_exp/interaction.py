"""The unit of learning: an interaction (x, y, o) = (context, completion, follow-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass
class Interaction:
    """One interaction. `context` is x as chat messages ({"role", "content"}) ending with the user
    message that `completion` (y) answers; `followup` (o) is the user's next message.

    `completion_ids`, when given, are the exact token ids sampled from the policy; they are used as
    they are instead of tokenising `completion`. `completion_ended` says whether the completion
    ended naturally (it then carries the end-of-turn token and gets a signal) or was truncated.
    `completion_logprobs`, aligned with `completion_ids`, are the sampler's log-probabilities of those
    tokens (None for a token it did not draw), for the off-policy correction (`loss.is_clip`).
    """

    context: list[dict[str, str]]
    completion: str
    followup: str
    id: str | None = None
    conversation_id: str | None = None
    turn: int | None = None
    completion_ids: list[int] | None = None
    completion_ended: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    completion_logprobs: list[float | None] | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON-lines form written by `task=prepare` and read by the offline trainer."""
        record = asdict(self)
        if record["completion_ids"] is None:
            del record["completion_ids"]
        if record["completion_logprobs"] is None:
            del record["completion_logprobs"]
        if record["completion_ended"]:
            del record["completion_ended"]
        return {k: v for k, v in record.items() if v is not None and v != {}}
