"""Helpers for the offline-training tests: small interaction files, fast overrides, in-process runs."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli, final_weights, reset_accelerate, run_in_process  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "src" / "sdpo_exp" / "resources" / "offline_demo"


def interaction_file(path: Path, n: int, start: int = 0) -> Path:
    """The first `n` interactions of the shipped demo file (from `start`)."""
    lines = (DEMO / "train.jsonl").read_text().splitlines()[start : start + n]
    path.write_text("\n".join(lines) + "\n")
    return path


def fast_overrides(train: Path, eval_path: Path | None = None, **trainer: object) -> list[str]:
    """tiny_random, short token limits, float32, no progress bar: seconds per run on a CPU."""
    out = [
        "task=offline",
        "model=tiny_random",
        "dataset=interactions",
        f"dataset.train_path={train}",
        f"dataset.eval_path={eval_path if eval_path else 'null'}",
        "trainer.max_prompt_tokens=96",
        "trainer.max_completion_tokens=24",
        "trainer.per_device_batch_size=2",
        "task.progress_bar=false",
    ]
    out += [f"trainer.{k}={v}" for k, v in trainer.items()]
    return out


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
