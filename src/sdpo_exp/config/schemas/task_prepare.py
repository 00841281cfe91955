"""Schema of `task=prepare`: turn a raw source (`dataset=...`) into interaction or prompt files, written
to the dataset's `output_dir`, the place its `train_path` / `eval_path` point at."""

from __future__ import annotations

from dataclasses import dataclass

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


@schema("task", "prepare")
@dataclass
class PrepareTaskConfig(TaskConfig):
    name: str = "prepare"
    # Replace output files that already exist (otherwise an existing output is an error).
    overwrite: bool = False
