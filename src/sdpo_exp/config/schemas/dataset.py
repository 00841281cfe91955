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


@schema("dataset", "interactions")
@dataclass
class InteractionsDatasetConfig(DatasetConfig):
    """Interaction files: one JSON object per line with context, completion and followup."""

    name: str = "interactions"
    train_path: str | None = None
    eval_path: str | None = None
    max_train_records: int | None = None
    max_eval_records: int | None = None
