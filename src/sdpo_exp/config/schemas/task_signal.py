"""Schema of `task=signal`: per-token hindsight advantages for a file of cases."""

from __future__ import annotations

from dataclasses import dataclass

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


@schema("task", "signal")
@dataclass
class SignalTaskConfig(TaskConfig):
    name: str = "signal"
    # JSON file of cases (see docs/signal.md); the shipped one is ${resource:signal_cases.json}
    cases: str | None = None
    # Use only the first N valid cases of the file (quick checks); null: all.
    max_cases: int | None = None
    # A sampled completion shorter than this (in tokens, end-of-turn token included) is resampled.
    min_completion_tokens: int = 0
    # How many more times a too-short completion is resampled; then the longest attempt is kept.
    max_resamples: int = 3
    # Cases per forward pass when scoring.
    batch_size: int = 4
    # Contexts longer than this lose whole oldest messages (x and (x, o) alike).
    max_prompt_tokens: int = 2048
    # Fixed completions are scored token for token as given; true appends the end-of-turn token,
    # as training does for a logged reply that ended.
    fixed_completion_eos: bool = False
    # Half-width of the shared colour scale; null: the 98th percentile of |A| over all tokens.
    color_limit: float | None = None
    # Token positions shown in the heatmaps; null: all (signals.json and tokens.html always have all).
    plot_max_tokens: int | None = None
    # Completion positions reduced at once when computing log-probs.
    chunk_size: int = 128
