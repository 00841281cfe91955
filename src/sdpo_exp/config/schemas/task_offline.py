"""Schema of `task=offline`: SDPO on logged interactions (Section 4.1)."""

from __future__ import annotations

from dataclasses import dataclass

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


@schema("task", "offline")
@dataclass
class OfflineTaskConfig(TaskConfig):
    name: str = "offline"
    # Evaluate once before the first step (the baseline of the eval curves).
    eval_at_start: bool = True
    # Evaluate after the last step.
    eval_at_end: bool = True
    # Per-device batch size for evaluation; None: trainer.per_device_batch_size.
    eval_batch_size: int | None = None
    # A progress bar (step, loss, tokens/s, ETA) on the main process.
    progress_bar: bool = True
    # On SIGTERM / SIGUSR2 (preemption, SLURM time limit): save a checkpoint at the next step
    # boundary, then exit non-zero (SIGTERM) or hand over to the previous handler (SIGUSR2).
    checkpoint_on_signal: bool = True
