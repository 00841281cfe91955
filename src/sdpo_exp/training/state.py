"""The trainer's own counters, saved in every checkpoint as `trainer_state.json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TrainerState:
    step: int = 0  # optimiser steps done; the data position is a function of it (see DataPlan)
    samples_seen: int = 0
    completion_tokens_seen: int = 0
    tokens_seen: int = 0  # student + teacher sequence tokens processed (padding excluded)
    train_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
