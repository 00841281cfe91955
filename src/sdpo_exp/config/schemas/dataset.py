"""Base schema of the ``dataset`` group and the plain interaction-file dataset.

Raw sources (WildFeedback, WildChat, HelpSteer2, TL;DR) have their schemas in ``dataset_sources.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from sdpo_exp.config.registry import schema


@dataclass
class DatasetConfig:
    name: str = MISSING


@dataclass
class InteractionFilesConfig(DatasetConfig):
    """What `task=offline` reads: interaction files (one JSON object per line) and the reader's limits."""

    train_path: str | None = None
    eval_path: str | None = None
    # The first N valid records of each file (None: all of them).
    max_train_records: int | None = None
    max_eval_records: int | None = None
    # A record whose context, completion and follow-up together exceed this many characters is
    # skipped (reason `too_long`); None disables the check. Token limits are `trainer.max_*_tokens`.
    max_total_chars: int | None = 200_000


@schema("dataset", "interactions")
@dataclass
class InteractionsDatasetConfig(InteractionFilesConfig):
    """Interaction files: one JSON object per line with context, completion and followup."""

    name: str = "interactions"


@dataclass
class PromptFilesConfig(DatasetConfig):
    """What the online tasks read: prompt files, one JSON object per line with `prompt` (and
    optionally `id` and `system`); training prompts and held-out evaluation prompts."""

    train_path: str | None = None
    eval_path: str | None = None
    # The first N valid prompts of each file (None: all of them).
    max_train_prompts: int | None = None
    max_eval_prompts: int | None = None


@schema("dataset", "prompts")
@dataclass
class PromptsDatasetConfig(PromptFilesConfig):
    """Prompt files of your own: dataset=prompts dataset.train_path=FILE dataset.eval_path=FILE."""

    name: str = "prompts"
