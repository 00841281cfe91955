"""The CPU demo end to end (slow): `python run.py` runs experiment=demo on SmolLM2-135M, the profile's
user against the `unrelated` control; here shortened to 16 interactions per arm and 8 held-out prompts,
with the files the full run writes."""

from __future__ import annotations

import pytest
from online_support import jsonl

pytestmark = pytest.mark.slow


def test_demo_end_to_end(run_cli, tmp_path):
    proc = run_cli([f"hydra.run.dir={tmp_path}", "task.num_interactions=16", "task.eval_every=8",
                    "task.eval.num_eval_prompts=8", "task.progress_bar=false"])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for arm in ("user", "unrelated"):
        assert len(jsonl(tmp_path / "arms" / arm / "interactions.jsonl")) == 16
        assert [r["interactions"] for r in jsonl(tmp_path / "arms" / arm / "winrate.jsonl")] == [0, 8, 16]
    for name in (
        "winrate.png",
        "report.md",
        "comparison.json",
        "oracle.jsonl",
        "summary.json",
        "eval_replies/base.jsonl",
    ):
        assert (tmp_path / name).is_file(), name
    out = proc.stdout + proc.stderr
    assert "comparison report" in out and "report.md" in out and "winrate.png" in out
    report = (tmp_path / "report.md").read_text()
    assert report.splitlines()[2].startswith("**SDPO") and "answer_directly" in report
