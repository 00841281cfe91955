"""Schema of the ``logger`` group: where metrics go besides the run directory's own files."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class LoggerBackend(Enum):
    jsonl = "jsonl"  # only metrics.jsonl and summary.json in the run directory
    wandb = "wandb"  # the same files plus Weights & Biases


class WandbMode(Enum):
    auto = "auto"  # online when an API key is configured, offline otherwise
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class LoggerConfig:
    backend: LoggerBackend = LoggerBackend.jsonl
    project: str = "sdpo-exp"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: WandbMode = WandbMode.auto
