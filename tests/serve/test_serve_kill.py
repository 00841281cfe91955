"""kill -9 while a request is being answered: every line of both logs is whole and valid, no logged
interaction is lost, and `python run.py task=serve` started again in the same run directory links
answers to replies served before the kill, logs none twice, and continues learning from its checkpoint
exactly (its weights after the next update equal task=offline's two steps on the same interactions)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import httpx
import torch
from serve_support import FAST, jsonl

from sdpo_exp.training.data_plan import DataPlan
from sdpo_exp.training.geometry import BatchGeometry

from conftest import CACHE_DIR, cli, final_weights, run_in_process

ARGS = [*FAST, "task.max_tokens=4000", "task.learn=online", "task.update_every=2", "trainer.lr=1e-3",
        "trainer.per_device_batch_size=2"]  # fmt: skip


def _start(run_dir, log_path):
    old = run_dir / "server.json"
    old.unlink(missing_ok=True)
    with open(log_path, "a") as log:
        proc = cli([*ARGS, f"hydra.run.dir={run_dir}"], stdout=log, stderr=subprocess.STDOUT,
                   env={"SDPO_CACHE_DIR": str(CACHE_DIR)})  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        if old.exists():
            url = json.loads(old.read_text())["url"]
            return proc, url
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the server did not start: {log_path.read_text()[-3000:]}")


def _chat(url, messages, **extra) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": messages, **extra}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def _say(url, messages, text) -> list[dict]:
    messages = [*messages, {"role": "user", "content": text}]
    body = _chat(url, messages)
    return [*messages, {"role": "assistant", "content": body["choices"][0]["message"]["content"]}]


def _wait_updates(url, n, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health", timeout=30).json()
        if health["updates"] >= n and health["queued"] < 2:
            return health
        time.sleep(0.2)
    raise AssertionError(f"no update {n}: {health}")


def _post_until_killed(url, messages) -> None:
    try:
        httpx.post(f"{url}/v1/chat/completions", json={"messages": messages, "max_tokens": 4000}, timeout=300)
    except httpx.HTTPError:  # the server dies under it
        pass


def _whole_lines(path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.decode().splitlines()]


def test_kill_9_while_serving_loses_nothing_and_a_restart_resumes(tmp_path):
    run_dir, log_path = tmp_path / "run", tmp_path / "serve.log"
    proc, url = _start(run_dir, log_path)
    try:
        a = _say(url, [], "Write a haiku.")
        a = _say(url, a, "Too long.")  # interaction 1
        a = _say(url, a, "No, about the sea.")  # interaction 2: update 1, checkpoint step-1
        b = _say(url, [], "What is a verb?")  # left unanswered before the kill
        assert _wait_updates(url, 1)["weights_version"] == 1
        # interaction 3, then a long reply: killed while it is generated
        killed = [*a, {"role": "user", "content": "Shorter please."}]
        thread = threading.Thread(target=_post_until_killed, args=(url, killed))
        thread.start()
        deadline = time.monotonic() + 60
        while (
            len((run_dir / "interactions.jsonl").read_text().splitlines()) < 3 and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    thread.join(60)

    conversations, interactions = (
        _whole_lines(run_dir / "conversations.jsonl"),
        _whole_lines(run_dir / "interactions.jsonl"),
    )
    assert len(conversations) == 4, "the long request must have been cut by the kill"
    assert [i["followup"] for i in interactions] == ["Too long.", "No, about the sea.", "Shorter please."]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # it never got to say more

    proc, url = _start(run_dir, log_path)
    try:
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert health["updates"] == 1 and health["weights_version"] == 1 and health["queued"] == 1
        assert health["pending_turns"] == 1  # b's reply; a's third was answered before the kill
        _chat(url, killed, max_tokens=4)  # the client retries: interaction 3 is not logged again
        answer = [*b, {"role": "user", "content": "Give an example."}]
        _chat(url, answer)  # answers a reply served before the kill: interaction 4, update 2
        _chat(url, answer)  # retried: nothing new
        assert _wait_updates(url, 2)["weights_version"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log_path.read_text()[-3000:]

    interactions = _whole_lines(run_dir / "interactions.jsonl")
    assert [i["followup"] for i in interactions] == ["Too long.", "No, about the sea.", "Shorter please.",
                                                      "Give an example."]  # fmt: skip
    assert len({i["id"] for i in interactions}) == 4
    assert interactions[3]["context"] == b[:1]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["restart_count"] == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 2 and summary["interactions_trained"] == 4 and summary["interactions"] == 4
    assert [r["step"] for r in jsonl(run_dir / "metrics.jsonl") if "train/loss" in r] == [1, 2]
    state = json.loads((run_dir / "checkpoints" / "step-2" / "trainer_state.json").read_text())
    assert state["serve"]["lines_consumed"] == 4

    # exact resume: task=offline's two steps on the same four interactions, presented in the order logged
    lines = (run_dir / "interactions.jsonl").read_text().splitlines()
    plan = DataPlan(4, BatchGeometry(2, 1, 1), seed=1234)
    placed = [""] * 4
    for position, index in enumerate(plan.step_items(0) + plan.step_items(1)):
        placed[index] = lines[position]
    (tmp_path / "train.jsonl").write_text("\n".join(placed) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server (OMP_NUM_THREADS=1)
    try:
        run_in_process(compose_offline(), tmp_path / "offline", [
            "task=offline", "model=tiny_random", "dataset=interactions", f"dataset.train_path={tmp_path / 'train.jsonl'}",
            "trainer.max_prompt_tokens=256", "trainer.max_completion_tokens=16", "trainer.lr=1e-3",
            "trainer.per_device_batch_size=2", "trainer.max_steps=2", "task.progress_bar=false",
            "task.eval_at_start=false", "task.eval_at_end=false",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    offline, served = final_weights(tmp_path / "offline"), final_weights(run_dir)
    assert offline.keys() == served.keys()
    assert all(torch.equal(offline[n], served[n]) for n in offline), max(
        (offline[n] - served[n]).abs().max().item() for n in offline
    )


def compose_offline():
    from sdpo_exp.config.check import compose_config

    from conftest import CONF_DIR

    return lambda *overrides: compose_config(CONF_DIR, [*overrides, f"paths.cache_dir={CACHE_DIR}"])
