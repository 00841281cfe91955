"""Exact resume: a run killed with SIGKILL after a checkpoint and restarted in the same run directory
ends with the same weights, bit for bit, as an uninterrupted run; a crash in the middle of writing a
checkpoint leaves the previous one as the newest complete checkpoint."""

from __future__ import annotations

import json
import logging
import signal
import time

import accelerate
import pytest
import torch
from offline_support import cli, fast_overrides, final_weights, interaction_file, metrics_rows, run_in_process

from sdpo_exp.training.checkpoint import COMPLETE, complete_checkpoints, latest_checkpoint

TIMING_KEYS = {"train/tokens_per_s", "train/step_seconds", "eval/seconds"}


def _overrides(tmp_path, run_dir):
    train = interaction_file(tmp_path / "train.jsonl", 10)
    held = interaction_file(tmp_path / "eval.jsonl", 3, start=20)
    return [
        *fast_overrides(
            train, held, max_steps=8, global_batch_size=4, lr=1e-3, eval_every=3, save_every=2, keep_last=2
        ),  # fmt: skip
        "trainer.save_final=true",
        f"hydra.run.dir={run_dir}",
    ]


def _wait(proc, timeout=300):
    return proc.wait(timeout=timeout)


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    with open(tmp_path / "plain.log", "w") as log:
        uninterrupted = cli(_overrides(tmp_path, plain), stdout=log, stderr=log)
        # the run to kill starts alongside, so the two share the machine's load
        with open(tmp_path / "killed.log", "w") as klog:
            victim = cli(_overrides(tmp_path, killed), stdout=klog, stderr=klog)
            deadline = time.monotonic() + 240
            while not (killed / "checkpoints" / "step-2" / COMPLETE).exists():
                assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=60) == -signal.SIGKILL
        assert _wait(uninterrupted) == 0, (tmp_path / "plain.log").read_text()[-3000:]
    assert not (killed / "final").exists(), "the run finished before it was killed; the test proved nothing"
    resumed_from = latest_checkpoint(killed)
    assert resumed_from is not None

    with open(tmp_path / "resumed.log", "w") as log:
        again = cli(_overrides(tmp_path, killed), stdout=log, stderr=log)
        assert _wait(again) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    run_log = (killed / "run.log").read_text()
    assert f"Resumed from {resumed_from}" in run_log

    a, b = final_weights(plain), final_weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name

    # the metrics file tells one story: every step once, the same values as the uninterrupted run
    def rows(run_dir):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in metrics_rows(run_dir)]

    assert rows(killed) == rows(plain)
    assert [s for s, _ in complete_checkpoints(killed)] == [6, 8]  # keep_last=2


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(compose, tmp_path, monkeypatch, caplog):
    run_dir = tmp_path / "run"
    train = interaction_file(tmp_path / "train.jsonl", 6)
    overrides = [
        *fast_overrides(train, None, max_steps=4, save_every=2, lr=1e-3, eval_every=0),
        "task.eval_at_start=false",
    ]
    original = accelerate.Accelerator.save_state
    calls = []

    def failing_save_state(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        result = original(self, output_dir, **kwargs)  # the files are written...
        if len(calls) == 2:
            raise OSError("No space left on device")  # ...and the process dies before completing
        return result

    monkeypatch.setattr(accelerate.Accelerator, "save_state", failing_save_state)
    with pytest.raises(OSError, match="No space left"):
        run_in_process(compose, run_dir, overrides)
    assert latest_checkpoint(run_dir).name == "step-2"
    partial = run_dir / "checkpoints" / ".tmp-step-4"
    assert (partial / "model.safetensors").exists()  # written, but never taken for a checkpoint
    assert [s for s, _ in complete_checkpoints(run_dir)] == [2]

    monkeypatch.setattr(accelerate.Accelerator, "save_state", original)
    with caplog.at_level(logging.INFO, logger="sdpo_exp"):
        summary = run_in_process(compose, run_dir, overrides)
    assert summary["steps"] == 4
    assert not partial.exists()  # cleaned up at the restart
    assert f"Resumed from {run_dir / 'checkpoints' / 'step-2'} at step 2 of 4" in caplog.text
    assert [s for s, _ in complete_checkpoints(run_dir)] == [2, 4]


def test_sigterm_saves_a_checkpoint_and_exits_nonzero(tmp_path):
    run_dir = tmp_path / "run"
    train = interaction_file(tmp_path / "train.jsonl", 6)
    args = [*fast_overrides(train, None, max_steps=200, eval_every=0, save_every=0), "task.eval_at_start=false",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    with open(tmp_path / "log", "w") as log:
        proc = cli(args, stdout=log, stderr=log)
        deadline = time.monotonic() + 240
        while not ((run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    (step, path), *_ = complete_checkpoints(run_dir)
    assert step >= 1
    assert "stopped by SIGTERM after saving a checkpoint" in (run_dir / "run.log").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "preempted" and "SIGTERM" in record["error"]
    assert not (run_dir / "final").exists()
