"""Schema of `task=signal`: per-token hindsight advantages for a file of cases."""

from __future__ import annotations

from dataclasses import dataclass

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


@schema("task", "signal")
@dataclass
class SignalTaskConfig(TaskConfig):
    name: str = "signal"
    cases: str | None = None
