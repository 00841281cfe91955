"""Schema of `task=serve`: the policy behind an OpenAI-compatible endpoint and a chat page; the
conversations logged as interactions, and (learn=online) SDPO updates between turns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


class Learn(Enum):
    off = "off"  # log only; `task=offline` trains on interactions.jsonl later
    online = "online"  # an SDPO update every `update_every` interactions, in the background


@schema("task", "serve")
@dataclass
class ServeTaskConfig(TaskConfig):
    name: str = "serve"
    # Where the server listens. Binding to anything but loopback without an api_key logs a warning.
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the one chosen is written to server.json in the run directory)
    # A bearer token the API requires (Authorization: Bearer <key>); null: no authentication.
    api_key: str | None = None
    learn: Learn = Learn.off
    # learn=online: interactions per update (one optimiser step on exactly these, in the order logged).
    update_every: int = 4
    # learn=online: stop updating after this many updates (null: never); also the length of the
    # learning-rate schedule (trainer.lr_scheduler), which without it is constant in effect.
    max_updates: int | None = None
    # learn=online: a checkpoint every N updates (0: none; resume=auto continues from the newest).
    save_every: int = 1
    # The model name reported by /v1/models and in responses (null: model.name).
    served_model_name: str | None = None
    # Limits: request body bytes (413 above), requests in flight (429 above), the most tokens a reply
    # may have (a request's max_tokens is capped to it), the most prompt tokens (400 above), messages.
    max_request_bytes: int = 262144
    max_concurrency: int = 4
    max_tokens: int = 256
    max_prompt_tokens: int = 2048
    max_messages: int = 200
    # Half-width of the page's colour scale for advantages; null: the 98th percentile of |A| of each reply.
    color_limit: float | None = None
    # Completion positions reduced at once when computing the advantages shown on the page.
    chunk_size: int = 128
