"""Every experiment preset composes, validates, and runs to completion in a fast mode."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))

# For each preset: the overrides that make it finish in seconds on tiny_random. A new preset without
# an entry here fails `test_every_experiment_has_fast_overrides`.
_SIGNAL_FAST = [
    "model=tiny_random",
    "task.max_cases=3",
    "generation.max_new_tokens=8",
    "task.min_completion_tokens=1",
    "task.max_resamples=0",
]
_OFFLINE_FAST = [
    "model=tiny_random",
    "trainer.optimizer=adamw",
    "trainer.precision=no",
    "trainer.max_steps=1",
    "trainer.global_batch_size=2",
    "trainer.per_device_batch_size=2",
    "trainer.max_prompt_tokens=128",
    "trainer.max_completion_tokens=32",
    "trainer.save_every=0",
    "dataset.max_train_records=8",
    "task.progress_bar=false",
]
# The paper presets read prepared WildFeedback/WildChat files; here they train on the shipped demo file.
_PAPER_OFFLINE_FAST = [*_OFFLINE_FAST, "dataset.train_path=${resource:offline_demo/train.jsonl}"]
# The online presets: tiny_random on the shipped demo prompts with the rule-based user and judge (the
# paper's presets use Claude or Qwen3-8B and prepared HelpSteer2 / TL;DR files).
_ONLINE_FAST = [
    "model=tiny_random",
    "dataset=online_demo",
    "simulator=rule_based",
    "judge=rule_based",
    "trainer.optimizer=adamw",
    "trainer.precision=no",
    "trainer.global_batch_size=4",
    "trainer.per_device_batch_size=4",
    "trainer.max_prompt_tokens=128",
    "trainer.max_completion_tokens=16",
    "trainer.save_every=0",
    "trainer.save_final=false",
    "generation.max_new_tokens=8",
    "task.num_interactions=8",
    "task.eval_every=0",
    "task.eval.num_eval_prompts=2",
    "task.eval.bootstrap_samples=20",
    "task.progress_bar=false",
]
_ORACLE_FAST = ["model=tiny_random", "dataset=online_demo", "judge=rule_based", "generation.max_new_tokens=8",
                "task.eval.num_eval_prompts=2", "task.eval.bootstrap_samples=20"]  # fmt: skip
# The benchmark demo on tiny_random, the base model alone, 2 items of each demo benchmark, short answers.
_BENCHMARK_FAST = ["model=tiny_random", "task.models=[base]", "benchmark.limit=2", "benchmark.max_gen_toks=8",
                   "benchmark.judged.max_new_tokens=8"]  # fmt: skip
FAST_OVERRIDES: dict[str, list[str]] = {
    "benchmark_demo": _BENCHMARK_FAST,
    "signal_demo": _SIGNAL_FAST,
    "signal_qwen8b": _SIGNAL_FAST,
    "offline_demo": [*_OFFLINE_FAST, "dataset.max_eval_records=4"],
    "wildfeedback_qwen4b": _PAPER_OFFLINE_FAST,
    "wildfeedback_qwen8b": _PAPER_OFFLINE_FAST,
    "wildfeedback_olmo3_7b_sft": _PAPER_OFFLINE_FAST,
    "wildfeedback_olmo3_7b_dpo": _PAPER_OFFLINE_FAST,
    "wildchat_qwen8b": _PAPER_OFFLINE_FAST,
    "sft_wildfeedback_qwen4b": _PAPER_OFFLINE_FAST,
    "demo": _ONLINE_FAST,
    "helpsteer_qwen8b_claude": _ONLINE_FAST,
    "tldr_qwen4b": _ONLINE_FAST,
    "tldr_flip_qwen4b": [*_ONLINE_FAST, "task.flip_after=4"],
    "helpsteer_sequential_qwen8b": [*_ONLINE_FAST, "task.switch_every=4", "task.num_interactions=12"],
    "tldr_oracle_qwen4b": _ORACLE_FAST,
}

TYPED = ["task", "model", "dataset", "loss", "trainer", "generation", "logger"]


def test_every_experiment_has_fast_overrides():
    assert sorted(FAST_OVERRIDES) == EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_is_typed(compose, name):
    cfg = compose(f"experiment={name}")
    assert cfg.experiment_name == name
    for group in TYPED:
        assert dataclasses.is_dataclass(OmegaConf.get_type(cfg, group)), (name, group)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n in FAST_OVERRIDES])
def test_experiment_runs_in_fast_mode(run_cli, tmp_path: Path, name):
    proc = run_cli([f"experiment={name}", f"hydra.run.dir={tmp_path}", *FAST_OVERRIDES[name]])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"
    assert (tmp_path / "summary.json").exists()
