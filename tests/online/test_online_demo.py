"""The default run end to end: `python run.py` with overrides is experiment=demo (the profile's user
against the `unrelated` control); on tiny_random in the default suite, on SmolLM2-135M in the slow one,
each shortened, with the files the full run writes."""

from __future__ import annotations

import json

import pytest
from online_support import jsonl

SHORT = [
    "task.num_interactions=32",
    "task.eval_every=16",
    "task.eval.num_eval_prompts=8",
    "task.progress_bar=false",
]
TINY = ["model=tiny_random", "generation.max_new_tokens=8", "trainer.max_completion_tokens=8",
        "trainer.max_prompt_tokens=128"]  # fmt: skip


def _check_default_run(proc, run_dir):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = (run_dir / "config.yaml").read_text()
    assert "experiment_name: demo" in config and "controls:\n  - unrelated" in config
    for arm in ("user", "unrelated"):
        assert len(jsonl(run_dir / "arms" / arm / "interactions.jsonl")) == 32
        assert [r["interactions"] for r in jsonl(run_dir / "arms" / arm / "winrate.jsonl")] == [0, 16, 32]
    for name in (
        "winrate.png",
        "report.md",
        "comparison.json",
        "oracle.jsonl",
        "summary.json",
        "eval_replies/base.jsonl",
    ):
        assert (run_dir / name).is_file(), name
    assert [r["interactions"] for r in json.loads((run_dir / "comparison.json").read_text())] == [16, 32]
    out = proc.stdout + proc.stderr
    assert "comparison report" in out and str(run_dir / "report.md") in out and "winrate.png" in out
    report = (run_dir / "report.md").read_text().splitlines()
    assert report[2].startswith("**SDPO") and "answer_directly" in report[2] and "sign test p =" in report[2]


def test_the_default_run_with_overrides_trains_both_arms_and_compares_them(run_cli, tmp_path):
    _check_default_run(run_cli([*TINY, *SHORT, f"hydra.run.dir={tmp_path}"]), tmp_path)


@pytest.mark.slow
def test_demo_end_to_end_on_smollm2(run_cli, tmp_path):
    _check_default_run(run_cli([*SHORT, f"hydra.run.dir={tmp_path}"]), tmp_path)
