"""Helpers for the online-task tests: fast overrides on tiny_random with the rule-based user."""

from __future__ import annotations

import json
from pathlib import Path


def online_overrides(**task: object) -> list[str]:
    """tiny_random, batches of 4 prompts, short replies, rule-based simulator and judge."""
    out = [
        "task=online",
        "model=tiny_random",
        "dataset=online_demo",
        "simulator=rule_based",
        "judge=rule_based",
        "user_profile=no_emojis",
        "trainer.per_device_batch_size=4",
        "trainer.max_prompt_tokens=128",
        "trainer.max_completion_tokens=16",
        "trainer.lr=1e-3",
        "generation.max_new_tokens=12",
        "task.eval.num_eval_prompts=4",
        "task.eval.bootstrap_samples=50",
        "task.progress_bar=false",
    ]
    defaults = {"num_interactions": 16, "eval_every": 8}
    out += [f"task.{k}={v}" for k, v in {**defaults, **task}.items()]
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
