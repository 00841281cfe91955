"""The trainer's own counters, saved in every checkpoint as `trainer_state.json`."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainerState:
    step: int = 0  # optimiser steps done; the data position is a function of it (see DataPlan)
    samples_seen: int = 0
    completion_tokens_seen: int = 0
    tokens_seen: int = 0  # student + teacher sequence tokens processed (padding excluded)
    train_seconds: float = 0.0
    # Interactions the batch builder could not use at train time (should stay empty: they are
    # filtered before training; kept as a guard).
    skipped: Counter = field(default_factory=Counter)
    best_eval: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = dict(self.skipped)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        state = cls(**known)
        state.skipped = Counter(state.skipped)
        return state
