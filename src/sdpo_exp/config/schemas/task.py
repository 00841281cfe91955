"""Base schema of the ``task`` group. Each task has its own module ``task_<name>.py`` with its schema."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class TaskConfig:
    name: str = MISSING
