"""An online run with `loss.is_clip`: the policy's samples carry the sampler's log-probs into the
logged interactions and the batches, and every step logs the sampler/learner mismatch and the
weights: about 0 and 1 with one update per batch (on-policy: the same model samples and learns);
with two updates per batch the second is off-policy, and the batch's mean shows it."""

from __future__ import annotations

import math

from online_support import jsonl, online_overrides

from conftest import run_in_process


def _run(compose, run_dir, updates_per_batch):
    overrides = online_overrides(
        num_interactions=8, eval_every=0, eval_at_start="false", updates_per_batch=updates_per_batch
    )
    run_in_process(compose, run_dir, [*overrides, "loss.is_clip=2.0", "trainer.lr=5e-3"])
    return [r for r in jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]


def test_online_run_logs_the_mismatch_and_weights(compose, tmp_path):
    run_dir = tmp_path / "run"
    rows = _run(compose, run_dir, 1)
    logged = [r for r in jsonl(run_dir / "interactions.jsonl") if "completion_ids" in r]
    assert logged and all(len(r["completion_logprobs"]) == len(r["completion_ids"]) for r in logged)
    assert all(v is None or v <= 0 for r in logged for v in r["completion_logprobs"])
    assert len(rows) == 2
    for row in rows:  # on-policy: the same model samples and learns, up to rounding
        assert row["train/is_log_ratio_abs_mean"] < 1e-4
        assert abs(row["train/is_weight_mean"] - 1.0) < 1e-4 and row["train/is_clip_frac"] == 0
    # a second update on the same samples is off-policy: the weights moved after they were drawn
    twice = _run(compose, tmp_path / "twice", 2)
    assert all(r["train/is_log_ratio_abs_mean"] > 1e-2 for r in twice)
    assert all(math.isfinite(r["train/is_weight_mean"]) and 0 <= r["train/is_clip_frac"] <= 1 for r in twice)
