"""Schema of `task=prepare`: turn a raw source (`dataset=...`) into interaction or prompt files."""

from __future__ import annotations

from dataclasses import dataclass

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


@schema("task", "prepare")
@dataclass
class PrepareTaskConfig(TaskConfig):
    name: str = "prepare"
    # Where to write; None: the dataset's `output_dir`.
    output_dir: str | None = None
    # Replace output files that already exist (otherwise an existing output is an error).
    overwrite: bool = False
