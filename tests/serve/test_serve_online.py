"""learn=online on tiny_random: the served weights stay those of the start until `update_every`
interactions have arrived, then change; the update equals task=offline's step on the same logged
interactions (bit for bit), and a checkpoint records what was consumed."""

from __future__ import annotations

import json
from contextlib import contextmanager

import torch
from serve_support import jsonl, reply, serve_in_process

from sdpo_exp.training.data_plan import DataPlan
from sdpo_exp.training.geometry import BatchGeometry

from conftest import final_weights, run_in_process

ONLINE = ["task.learn=online", "task.update_every=3", "trainer.lr=1e-3"]


@contextmanager
def _one_thread():
    """The serving tests compute with one intra-op thread; so does the offline run compared with them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _offline(compose, run_dir, train_path) -> dict[str, torch.Tensor]:
    with _one_thread():
        run_in_process(compose, run_dir, [
            "task=offline", "model=tiny_random", "dataset=interactions", f"dataset.train_path={train_path}",
            "trainer.max_prompt_tokens=256", "trainer.max_completion_tokens=16", "trainer.lr=1e-3",
            "trainer.max_steps=1", "task.progress_bar=false", "task.eval_at_start=false", "task.eval_at_end=false",
        ])  # fmt: skip
    return final_weights(run_dir)


def test_online_update_changes_the_served_weights_and_equals_offline(compose, tmp_path):
    run_dir = tmp_path / "serve"
    with serve_in_process(compose, run_dir, *ONLINE) as served:
        policy, learner = served.session.policy, served.session.learner
        start = _weights(policy.model)
        client, messages = served.client(), []
        for k, text in enumerate(["Tell me a joke.", "Too long.", "Not funny.", "Try a pun."]):
            messages.append({"role": "user", "content": text})
            messages.append(
                {
                    "role": "assistant",
                    "content": reply(client.chat.completions.create(model="m", messages=messages)),
                }
            )
            assert learner.wait_idle(120)
            if k < 3:  # k interactions logged: fewer than update_every
                assert policy.version == 0 and learner.state.updates == 0
                assert all(torch.equal(v, start[n]) for n, v in _weights(policy.model).items())
        assert policy.version == 1 and learner.state.updates == 1 and learner.error is None
        updated = _weights(policy.model)
        assert any(not torch.equal(v, start[n]) for n, v in updated.items())
        # replies before the third interaction came from the old weights, one after the update from the new
        # (the reply to the message that completed it raced with the update: either)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hello again"}])
        versions = [t["weights_version"] for t in jsonl(run_dir / "conversations.jsonl")]
        assert versions[:3] == [0, 0, 0] and versions[4] == 1
    state = json.loads((run_dir / "checkpoints" / "step-1" / "trainer_state.json").read_text())
    assert state["serve"]["lines_consumed"] == 3 and state["serve"]["interactions_trained"] == 3

    # task=offline on the logged file, its data plan presenting the lines in the order they were logged
    logged = (run_dir / "interactions.jsonl").read_text().splitlines()
    assert len(logged) == 3
    order = DataPlan(3, BatchGeometry(4, 1, 1), seed=int(compose("task=offline").seed)).step_items(0)
    placed = [""] * 3
    for position, index in enumerate(order):
        placed[index] = logged[position]
    train = tmp_path / "interactions.jsonl"
    train.write_text("\n".join(placed) + "\n")
    offline = _offline(compose, tmp_path / "offline", train)
    common = [n for n in offline if n in updated]
    assert len(common) >= len(offline) - 1
    assert all(torch.equal(offline[n], updated[n]) for n in common), max(
        (offline[n] - updated[n]).abs().max().item() for n in common
    )

    # the comparison can fail: the offline step on two of the three interactions gives other weights
    (tmp_path / "two.jsonl").write_text("\n".join(logged[:2]) + "\n")
    other = _offline(compose, tmp_path / "offline_two", tmp_path / "two.jsonl")
    assert max((other[n] - updated[n]).abs().max().item() for n in common) > 1e-4
