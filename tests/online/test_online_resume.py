"""An online run killed with SIGKILL after a checkpoint and started again in its run directory samples
the same replies, gets the same follow-ups and ends with the same weights as an uninterrupted run
(CPU, rule-based user)."""

from __future__ import annotations

import signal
import time

import torch
from online_support import jsonl, online_overrides

from sdpo_exp.training.checkpoint import COMPLETE, latest_checkpoint

from conftest import cli, final_weights

TIMING = {"train/tokens_per_s", "train/step_seconds", "train/sample_seconds", "train/update_seconds"}


def _overrides(run_dir):
    return [*online_overrides(num_interactions=24, eval_every=8), "trainer.save_every=2",
            "trainer.save_final=true", f"hydra.run.dir={run_dir}"]  # fmt: skip


def _run_and_kill(tmp_path, args, checkpoint_dir):
    """Start the same run twice (plain, killed); SIGKILL the second once `checkpoint_dir` (a directory
    of the killed run) holds a complete step-2 checkpoint; wait for the first to finish."""
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    with open(tmp_path / "plain.log", "w") as log, open(tmp_path / "killed.log", "w") as klog:
        uninterrupted = cli([*_overrides(plain), *args], stdout=log, stderr=log)
        victim = cli([*_overrides(killed), *args], stdout=klog, stderr=klog)
        deadline = time.monotonic() + 300
        while not (checkpoint_dir / "checkpoints" / "step-2" / COMPLETE).exists():
            assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no checkpoint appeared in {checkpoint_dir}"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
        assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "plain.log").read_text()[-3000:]
    return plain, killed


def test_sigkill_mid_run_then_resume_repeats_the_run_exactly(tmp_path):
    plain, killed = _run_and_kill(tmp_path, [], tmp_path / "killed")
    assert not (killed / "final").exists(), "the run finished before it was killed; the test proved nothing"
    resumed_from = latest_checkpoint(killed)
    with open(tmp_path / "resumed.log", "w") as log:
        again = cli(_overrides(killed), stdout=log, stderr=log)
        assert again.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert f"Resumed from {resumed_from}" in (killed / "run.log").read_text()

    # the same prompts, sampled replies (ids) and follow-ups, each batch once
    assert jsonl(killed / "interactions.jsonl") == jsonl(plain / "interactions.jsonl")
    assert len(jsonl(plain / "interactions.jsonl")) == 24
    assert jsonl(killed / "winrate.jsonl") == jsonl(plain / "winrate.jsonl")

    def rows(run_dir):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in jsonl(run_dir / "metrics.jsonl")]

    assert rows(killed) == rows(plain)
    a, b = final_weights(plain), final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_with_a_control_killed_in_its_second_arm_resumes_there(tmp_path):
    """The finished arm is not run again; the control arm continues from its checkpoint; the
    comparison equals an uninterrupted run's."""
    args = ["task.controls=[unrelated]", "user_profile=no_questions_back"]
    control = tmp_path / "killed" / "arms" / "unrelated"
    plain, killed = _run_and_kill(tmp_path, args, control)
    assert not (control / "final").exists(), "the arm finished before it was killed; the test proved nothing"
    user_done = (killed / "arms" / "user" / "arm.json").stat().st_mtime_ns
    with open(tmp_path / "resumed.log", "w") as log:
        again = cli([*_overrides(killed), *args], stdout=log, stderr=log)
        assert again.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    text = (killed / "run.log").read_text()
    assert "Arm user finished in an earlier attempt" in text and "Resumed from" in text
    assert (killed / "arms" / "user" / "arm.json").stat().st_mtime_ns == user_done
    for arm in ("user", "unrelated"):
        assert jsonl(killed / "arms" / arm / "interactions.jsonl") == jsonl(
            plain / "arms" / arm / "interactions.jsonl"
        )
        a, b = final_weights(plain / "arms" / arm), final_weights(killed / "arms" / arm)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / "comparison.json").read_text() == (plain / "comparison.json").read_text()
