"""The CPU demo end to end (slow): `python run.py` with no override runs experiment=demo on
SmolLM2-135M; here shortened to 32 interactions, with the files the full run writes."""

from __future__ import annotations

import pytest
from online_support import jsonl

pytestmark = pytest.mark.slow


def test_demo_end_to_end(run_cli, tmp_path):
    proc = run_cli(["experiment=demo", f"hydra.run.dir={tmp_path}", "task.num_interactions=32",
                    "task.eval_every=16", "task.progress_bar=false"])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(jsonl(tmp_path / "interactions.jsonl")) == 32
    assert [r["interactions"] for r in jsonl(tmp_path / "winrate.jsonl")] == [0, 16, 32]
    for name in ("winrate.png", "report.md", "summary.json", "eval_replies/base.jsonl"):
        assert (tmp_path / name).is_file(), name
    out = proc.stdout + proc.stderr
    assert "win-rate plot" in out and "winrate.png" in out and "report.md" in out
    report = (tmp_path / "report.md").read_text()
    assert "answer_directly" in report and "share_long_list" in report
