"""task.overlap_simulation on tiny_random with a user behind the Anthropic API (the real SDK against
the local Messages API server, with a latency): the same interactions are trained on as without the
overlap, every batch but the first is sampled from the weights one update older (and no older), the
calls overlap the sampling, and a run killed after a checkpoint resumes exactly."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from online_support import jsonl, online_overrides

from sdpo_exp.errors import ConfigError
from sdpo_exp.training.checkpoint import COMPLETE, STATE_FILE, latest_checkpoint

from conftest import cli, final_weights, run_in_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "users"))
from anthropic_server import Latency, MessagesServer  # noqa: E402

KEY_ENV = "SDPO_TEST_OVERLAP_KEY"
TIMING = {"train/tokens_per_s", "train/step_seconds", "train/sample_seconds", "train/update_seconds"}


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-overlap")
    with MessagesServer(latency=Latency(ttft_s=0.2, tokens_per_s=200.0, min_tokens=10, max_tokens=30)) as srv:
        yield srv


def _api_user(server, **task) -> list[str]:
    return [*online_overrides(**{"num_interactions": 16, "eval_every": 0, **task}), "simulator=claude_haiku",
            f"simulator.base_url={server.url}", f"simulator.api_key_env={KEY_ENV}", "simulator.max_retries=1",
            "simulator.backoff_base_s=0.01", "simulator.timeout_s=20"]  # fmt: skip


def _versions(run_dir: Path) -> list[tuple[int, int]]:
    return [(r["batch"], r["policy_version"]) for r in jsonl(run_dir / "interactions.jsonl")]


def test_overlap_trains_as_many_interactions_one_batch_stale(compose, server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sdpo_exp")
    plain = run_in_process(compose, tmp_path / "plain", _api_user(server))
    calls_before = sum(server.recorder.attempts.values())
    over = run_in_process(compose, tmp_path / "over", [*_api_user(server), "task.overlap_simulation=true"])
    assert sum(server.recorder.attempts.values()) - calls_before == 16  # one call per interaction
    assert over["interactions"] == plain["interactions"] == 16 and over["batches"] == plain["batches"] == 4
    assert over["steps"] == plain["steps"] == 4

    # without the overlap every batch is sampled from the latest weights; with it, batch t >= 1 from the
    # weights before batch t-1's update: one batch stale, never more
    assert _versions(tmp_path / "plain") == [(b, b) for b in range(4) for _ in range(4)]
    assert _versions(tmp_path / "over") == [(b, max(b - 1, 0)) for b in range(4) for _ in range(4)]
    assert plain["stale_batches"] == 0 and over["stale_batches"] == 3

    a, b = jsonl(tmp_path / "plain" / "interactions.jsonl"), jsonl(tmp_path / "over" / "interactions.jsonl")
    assert [r["prompt_id"] for r in a] == [r["prompt_id"] for r in b]  # the same prompts in the same order
    # the first batch comes from the same weights and the same random stream: the same replies (later
    # ones come from other weights; a random tiny model barely moves, so they may still agree)
    assert [r["completion_ids"] for r in a[:4]] == [r["completion_ids"] for r in b[:4]]

    # the user's calls ran while the next batch was sampled: the loop waited for less than they took
    assert plain["simulate_wait_seconds"] == pytest.approx(plain["simulate_seconds"])
    assert over["simulate_wait_seconds"] < over["simulate_seconds"]
    assert over["simulator/calls"] == 16 and over.get("simulator/failed", 0) == 0
    assert caplog.text.count("task.overlap_simulation: the user's follow-ups to batch t are fetched") == 1


def test_a_user_on_the_policys_backend_cannot_overlap(compose, tmp_path):
    with pytest.raises(ConfigError, match="overlap_simulation=true needs a simulator"):
        run_in_process(compose, tmp_path / "run", [*online_overrides(), "simulator=smollm2",
                                                   "task.overlap_simulation=true"])  # fmt: skip


def _cli_overrides(server, run_dir: Path) -> list[str]:
    return [*_api_user(server, num_interactions=24), "task.overlap_simulation=true", "trainer.save_every=2",
            "trainer.save_final=true", f"hydra.run.dir={run_dir}"]  # fmt: skip


def test_overlapped_run_killed_after_a_checkpoint_resumes_exactly(server, tmp_path):
    """The checkpoint holds the batch sampled ahead: the resumed run trains on it, samples the rest from
    the same random stream and ends with the uninterrupted run's interactions and weights."""
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    with open(tmp_path / "plain.log", "w") as log, open(tmp_path / "killed.log", "w") as klog:
        uninterrupted = cli(_cli_overrides(server, plain), stdout=log, stderr=log)
        victim = cli(_cli_overrides(server, killed), stdout=klog, stderr=klog)
        deadline = time.monotonic() + 300
        while not (killed / "checkpoints" / "step-2" / COMPLETE).exists():
            assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
        assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "plain.log").read_text()[-3000:]
    assert not (killed / "final").exists(), "the run finished before it was killed; the test proved nothing"
    resumed_from = latest_checkpoint(killed)
    pending = json.loads((resumed_from / STATE_FILE).read_text()).get("pending")
    assert pending and pending["batch"] == int(resumed_from.name.split("-")[1])  # the batch sampled ahead
    with open(tmp_path / "resumed.log", "w") as log:
        again = cli(_cli_overrides(server, killed), stdout=log, stderr=log)
        assert again.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert f"Resumed from {resumed_from}" in (killed / "run.log").read_text()

    assert jsonl(killed / "interactions.jsonl") == jsonl(plain / "interactions.jsonl")
    assert len(jsonl(plain / "interactions.jsonl")) == 24
    assert _versions(plain) == [(b, max(b - 1, 0)) for b in range(6) for _ in range(4)]

    def rows(run_dir):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in jsonl(run_dir / "metrics.jsonl")]

    assert rows(killed) == rows(plain)
    a, b = final_weights(plain), final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a sequential run cannot continue an overlapped run's checkpoint (it holds a sampled batch)
    with open(tmp_path / "refused.log", "w") as log:
        args = [a for a in _cli_overrides(server, killed) if a != "task.overlap_simulation=true"]
        refused = cli([*args, "task.num_interactions=32"], stdout=log, stderr=log)
        assert refused.wait(timeout=300) != 0
    assert "task.overlap_simulation" in (tmp_path / "refused.log").read_text()
