"""task=oracle and task=evaluate on tiny_random with the rule-based judge: the files they promise,
rows that agree with them, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest
from online_support import jsonl, online_overrides

from sdpo_exp.errors import ConfigError

from conftest import run_in_process

ORACLE = ["task=oracle", "model=tiny_random", "dataset=online_demo", "judge=rule_based", "user_profile=no_emojis",
          "generation.max_new_tokens=8", "task.eval.num_eval_prompts=3", "task.eval.bootstrap_samples=20"]  # fmt: skip


def test_oracle_judges_the_system_prompted_model_against_itself_without(compose, tmp_path):
    run_dir = tmp_path / "oracle"
    summary = run_in_process(compose, run_dir, ORACLE)
    (row,) = jsonl(run_dir / "winrate.jsonl")
    assert row["profile"] == "no_emojis" and row["baseline"] == "no system prompt" and row["pairs"] == 3
    assert "final/no_emojis/coverage" in summary
    assert (run_dir / "winrate.png").is_file() and "## Win rates" in (run_dir / "report.md").read_text()
    assert len(jsonl(run_dir / "eval_replies" / "base.jsonl")) == 3


def test_evaluate_tables_each_checkpoint_and_profile(compose, tmp_path):
    trained = tmp_path / "trained"
    run_in_process(
        compose, trained, [*online_overrides(num_interactions=8, eval_every=0), "trainer.save_final=true"]
    )
    run_dir = tmp_path / "evaluate"
    summary = run_in_process(compose, run_dir, [
        "task=evaluate", "model=tiny_random", "dataset=online_demo", "judge=rule_based",
        f"task.checkpoints=[{trained},{trained / 'final'}]", "task.profiles=[no_emojis,no_lists]",
        "generation.max_new_tokens=8", "task.eval.num_eval_prompts=3", "task.eval.bootstrap_samples=20",
    ])  # fmt: skip
    rows = json.loads((run_dir / "evaluation.json").read_text())
    assert [(r["model"], r["profile"]) for r in rows] == [
        (str(trained), "no_emojis"), (str(trained), "no_lists"),
        (str(trained / "final"), "no_emojis"), (str(trained / "final"), "no_lists"),
    ]  # fmt: skip
    assert all(r["pairs"] == 3 and r["model_dir"] == str(trained / "final") for r in rows)
    # the same model twice: the same verdicts
    assert rows[0]["wins"] == rows[2]["wins"] and rows[1]["ties"] == rows[3]["ties"]
    table = (run_dir / "evaluation.md").read_text()
    assert "| model | no_emojis | no_lists |" in table and table.count("\n| ") >= 3
    assert (run_dir / "evaluation.png").stat().st_size > 5_000
    assert isinstance(summary, dict)
    with pytest.raises(ConfigError, match="neither a model directory nor a run directory"):
        run_in_process(compose, tmp_path / "bad", ["task=evaluate", "model=tiny_random", "dataset=online_demo",
                                                   "judge=rule_based", f"task.checkpoints=[{tmp_path / 'nope'}]"])  # fmt: skip
