"""Schemas of the online tasks (paper, Section 4.2): `online` (SDPO with a simulated user), `oracle`
(the profile in the system prompt) and `evaluate` (win rates of checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


class Schedule(Enum):
    single = "single"  # the run's user_profile throughout
    flip = "flip"  # the profile's opposite from `flip_after` interactions on (paper, Figure 5)
    sequential = "sequential"  # `profiles` in turn, `switch_every` interactions each (paper, Figure 6)


@dataclass
class WinRateEvalConfig:
    """How policies are compared with a baseline on the held-out prompts."""

    num_eval_prompts: int = 16  # the first N held-out prompts (the paper used 256)
    # Greedy completions of this length (None: generation.max_new_tokens).
    max_new_tokens: int | None = None
    bootstrap_samples: int = 1000
    # Prompts generated at once for the greedy replies (hf backend; None: generation.batch_size).
    batch_size: int | None = None


# The in-context oracle's system prompt; {profile} is the profile's description.
ORACLE_SYSTEM_PROMPT = (
    "Answer the user's request. The user has these preferences about style; follow them: {profile}"
)


@schema("task", "online")
@dataclass
class OnlineTaskConfig(TaskConfig):
    name: str = "online"
    # Interactions to train on: batches of trainer's global batch size of training prompts.
    num_interactions: int = 256
    # Optimiser steps on each batch of fresh interactions (the paper: 1).
    updates_per_batch: int = 1
    # Evaluate every N interactions (0: only at the start and the end); also at every profile switch.
    eval_every: int = 64
    eval_at_start: bool = True
    eval_at_end: bool = True
    eval: WinRateEvalConfig = field(default_factory=WinRateEvalConfig)
    schedule: Schedule = Schedule.single
    flip_after: int = 250
    # sequential: the profiles in order (user_profile options); empty: the run's user_profile only.
    profiles: list[str] = field(default_factory=list)
    switch_every: int = 500
    # Control arms: simulator options (`unrelated`, `neutral`, ...) that replace `simulator` in copies
    # of this run (same seed, prompts, sampling and updates), trained one after the other in
    # arms/<name>/ of the run directory after the run itself (arms/user/); the run then compares them
    # prompt by prompt at every evaluation (report.md, comparison.json, winrate.png). Empty: no control.
    controls: list[str] = field(default_factory=list)
    # The in-context oracle (the profile in the system prompt of the untrained model, judged against
    # the base model on the same held-out prompts) as a reference line: oracle.jsonl.
    oracle: bool = False
    oracle_system_prompt: str = ORACLE_SYSTEM_PROMPT
    # Fetch the simulated user's follow-ups to batch t (in a thread) while the policy samples batch t+1
    # from the weights before batch t's update: one batch of staleness, counted in summary.json
    # (`stale_batches`) and recorded per interaction (`policy_version`). For users behind an API
    # (anthropic); a rule-based or control user answers in microseconds, and a local model user
    # (hf, vllm) is refused. Off: the paper's loop, every batch sampled from the latest weights.
    overlap_simulation: bool = False
    # Interactions shown before and after training in report.md.
    report_examples: int = 3
    progress_bar: bool = True
    checkpoint_on_signal: bool = True


@schema("task", "oracle")
@dataclass
class OracleTaskConfig(TaskConfig):
    name: str = "oracle"
    eval: WinRateEvalConfig = field(default_factory=WinRateEvalConfig)
    # The system prompt of the in-context oracle; {profile} is the profile's description.
    system_prompt: str = ORACLE_SYSTEM_PROMPT


@schema("task", "evaluate")
@dataclass
class EvaluateTaskConfig(TaskConfig):
    name: str = "evaluate"
    eval: WinRateEvalConfig = field(default_factory=WinRateEvalConfig)
    # Model directories (e.g. <run dir>/final) or run directories (their final/ and checkpoints'
    # exported models are used).
    checkpoints: list[str] = field(default_factory=list)
    # The baseline: a model directory, or null for the base model of `model`.
    baseline: str | None = None
    # Profiles to judge for (user_profile options); empty: the run's user_profile.
    profiles: list[str] = field(default_factory=list)
