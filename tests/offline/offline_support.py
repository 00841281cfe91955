"""Helpers for the offline-training tests: small interaction files, fast overrides, in-process runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

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


def reset_accelerate() -> None:
    """accelerate keeps process-wide state; each in-process run starts from a clean one."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def run_in_process(compose, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    from sdpo_exp.tasks.runner import execute

    reset_accelerate()
    cfg = compose(*overrides)
    try:
        return execute(cfg, run_dir)
    finally:
        reset_accelerate()


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "final" / "model.safetensors")


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    """`python run.py ARGS` as a child process (stdout and stderr to a log file next to the run)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200",
           "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})}  # fmt: skip
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env, **kwargs)
