"""Base schema of the ``task`` group and the tasks whose implementation comes in later versions.

Each implemented task has its own module ``task_<name>.py`` with its schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from sdpo_exp.config.registry import schema


@dataclass
class TaskConfig:
    name: str = MISSING


@schema("task", "online")
@dataclass
class OnlineTaskConfig(TaskConfig):
    name: str = "online"


@schema("task", "oracle")
@dataclass
class OracleTaskConfig(TaskConfig):
    name: str = "oracle"


@schema("task", "evaluate")
@dataclass
class EvaluateTaskConfig(TaskConfig):
    name: str = "evaluate"
