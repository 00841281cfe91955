"""CheckpointManager with a real Accelerator: what is saved comes back bit for bit, RNG included."""

from __future__ import annotations

import random

import numpy as np
import torch
from offline_support import reset_accelerate

from sdpo_exp.training.checkpoint import CheckpointManager, complete_checkpoints


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


def _setup(tiny_model):
    from accelerate import Accelerator

    reset_accelerate()
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2)
    model, opt = acc.prepare(tiny_model, opt)
    counter = Counter()
    acc.register_for_checkpointing(counter)
    return acc, model, opt, counter


def _train_step(model, opt):
    ids = torch.randint(0, 1000, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()


def test_save_and_load_restore_everything(tiny_model, tmp_path):
    acc, model, opt, counter = _setup(tiny_model)
    _train_step(model, opt)
    counter.value = 7
    manager = CheckpointManager(acc, tmp_path, keep_last=2)
    path = manager.save(1, {"trainer": {"step": 1}})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: v.clone() for k, v in opt.state_dict()["state"][0].items()}
    draws = (random.random(), np.random.rand(), torch.rand(3))

    _train_step(model, opt)  # move everything on
    counter.value = 99
    state = manager.load(path)
    assert state == {"trainer": {"step": 1}}
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(value, moments[key]), key
    assert counter.value == 7
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert draws[0] == again[0] and draws[1] == again[1] and torch.equal(draws[2], again[2])
    reset_accelerate()


def test_keep_last_prunes_the_oldest(tiny_model, tmp_path):
    acc, model, opt, _ = _setup(tiny_model)
    manager = CheckpointManager(acc, tmp_path, keep_last=2)
    for step in (2, 4, 6):
        manager.save(step, {"step": step})
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [4, 6]
    reset_accelerate()
