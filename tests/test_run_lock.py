"""One live run per run directory: a second run there exits 2 and leaves the first alone; the lock
of a killed run is taken over, so that resuming after kill -9 still works."""

from __future__ import annotations

import json
import signal
import time

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
