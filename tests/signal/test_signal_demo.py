"""The real CPU demo: `python run.py experiment=signal_demo` on SmolLM2-135M (about 2 minutes)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_signal_demo_runs_on_smollm2(run_cli, tmp_path):
    proc = run_cli(["experiment=signal_demo", f"hydra.run.dir={tmp_path}"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document = json.loads((tmp_path / "signals.json").read_text())
    assert document["meta"]["model"]["name"] == "smollm2_135m"
    assert document["meta"]["template"] == "offline_v1"
    cases = document["cases"]
    assert len(cases) >= 14 and not document["meta"]["skipped_cases"]
    fig2 = next(c for c in cases if c["id"] == "fig2_yes_no")
    assert fig2["completion_text"] == "YES, water is wet." and "".join(fig2["tokens"]) == "YES, water is wet."
    sampled = [c for c in cases if c["completion_source"] == "sampled"]
    assert sampled and all(len(c["completion_token_ids"]) >= 1 for c in sampled)
    for c in sampled:  # at least the minimum length unless flagged
        assert len(c["completion_token_ids"]) >= 48 or c["extra"]["below_min_completion_tokens"]
    summary = document["summary"]
    # a real model moves its log-probs under either follow-up; how much more under the relevant one
    # is measured, not asserted (a 135M model separates them weakly; see docs/signal.md)
    assert summary["mean_abs_advantage_followup"] > 0.01 and summary["mean_abs_advantage_unrelated"] > 0.01
    for name in ("heatmap_followup.png", "heatmap_unrelated.png", "side_by_side.png", "tokens.html"):
        assert (tmp_path / name).stat().st_size > 10_000
