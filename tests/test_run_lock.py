"""One live run per run directory: a second run there exits 2 and leaves the first alone; the lock
of a killed run is taken over, so that resuming after kill -9 still works."""

from __future__ import annotations

import json
import signal
import time

import pytest

from conftest import cli

ARGS = ["task=online", "model=tiny_random", "dataset=online_demo", "simulator=rule_based", "judge=rule_based",
        "user_profile=no_emojis", "trainer.per_device_batch_size=4", "trainer.max_prompt_tokens=128",
        "trainer.max_completion_tokens=8", "generation.max_new_tokens=8", "task.eval.num_eval_prompts=2",
        "task.eval_every=0", "task.progress_bar=false", "trainer.save_final=false"]  # fmt: skip


def test_second_run_in_a_live_directory_is_refused_and_a_dead_lock_is_taken_over(tmp_path, run_cli):
    run_dir = tmp_path / "run"
    with open(tmp_path / "first.log", "w") as log:
        first = cli([*ARGS, "task.num_interactions=4000", f"hydra.run.dir={run_dir}"], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while not (run_dir / "interactions.jsonl").exists():
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
                assert time.monotonic() < deadline
                time.sleep(0.1)
            before = {name: (run_dir / name).read_bytes() for name in ("run.json", ".hydra/overrides.yaml")}
            second = run_cli([*ARGS, "task.num_interactions=8", f"hydra.run.dir={run_dir}"])
            assert second.returncode == 2
            assert f"is in use by process {first.pid} on host" in second.stderr
            assert {
                name: (run_dir / name).read_bytes() for name in before
            } == before  # the first run untouched
            assert first.poll() is None
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=60)
    lock = json.loads((run_dir / "run.lock").read_text())
    assert lock["pid"] == first.pid  # left behind by the kill
    again = run_cli([*ARGS, "task.num_interactions=8", "resume=never", f"hydra.run.dir={run_dir}"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Taking over the stale lock" in (run_dir / "run.log").read_text()
    assert not (run_dir / "run.lock").exists()  # released at the end


def test_a_lock_from_another_host_is_taken_over_only_by_the_same_slurm_job(tmp_path, monkeypatch):
    from sdpo_exp.run_lock import RunDirectoryInUse, RunLock

    (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "node-a", "slurm_job": "77_1"}))
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RunDirectoryInUse, match="process 1 on host node-a"):
        RunLock(tmp_path).acquire("now")  # not in SLURM: another host's lock is trusted
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    with pytest.raises(RunDirectoryInUse):
        RunLock(tmp_path).acquire("now")  # another task of the array
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    lock = RunLock(tmp_path)
    lock.acquire("now")  # the requeued job, on another node
    assert json.loads((tmp_path / "run.lock").read_text())["slurm_job"] == "77_1"
    lock.release()
    assert not (tmp_path / "run.lock").exists()
