"""`trainer.strategy=fsdp` in whole runs: two processes (torchrun over gloo, through the project's
launcher) train the model one process trains, a run killed with SIGKILL after a sharded checkpoint
resumes to the uninterrupted run's weights bit for bit, and `final/` is a plain Hugging Face
directory with the full weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil  # accelerate's dependency
import pytest
import torch
from offline_support import (
    REPO,
    fast_overrides,
    final_weights,
    interaction_file,
    metrics_rows,
    run_in_process,
)

from sdpo_exp.training.checkpoint import COMPLETE, complete_checkpoints, latest_checkpoint

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
TIMING_KEYS = {"train/tokens_per_s", "train/step_seconds", "eval/seconds"}


def _overrides(tmp_path, **trainer):
    train = interaction_file(tmp_path / "train.jsonl", 10)
    return [
        *fast_overrides(train, None, global_batch_size=4, lr=1e-2, adam_eps=1.0, **trainer),
        "loss.teacher.kind=ema",  # a teacher with sharded weights of its own, saved with the run
        "task.eval_at_start=false",
        "task.eval_at_end=false",
    ]


def _launch(overrides, run_dir, log_path):
    cmd = [sys.executable, "-m", "sdpo_exp.training.launch", "--config", "launchers/accelerate/cpu.yaml",
           "--num-processes", "2", "--", *overrides, "trainer.strategy=fsdp", f"hydra.run.dir={run_dir}"]  # fmt: skip
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log, stderr=log, start_new_session=True)


def _finish(proc, log_path, timeout=600):
    assert proc.wait(timeout=timeout) == 0, log_path.read_text()[-4000:]


def test_fsdp_two_processes_train_what_one_process_trains(compose, tmp_path):
    overrides = _overrides(tmp_path, max_steps=2)
    one = tmp_path / "one"
    run_in_process(compose, one, overrides)
    two = tmp_path / "two"
    _finish(_launch(overrides, two, tmp_path / "two.log"), tmp_path / "two.log")

    assert json.loads((two / "summary.json").read_text())["num_processes"] == 2
    assert "FSDP" in (two / "run.log").read_text()
    w1, w2 = final_weights(one), final_weights(two)
    assert w1.keys() == w2.keys()
    moved = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    biggest = max(v.abs().max().item() for v in w1.values())
    assert moved <= 1e-5 * biggest, (moved, biggest)
    rows1 = [r for r in metrics_rows(one) if "train/loss" in r]
    rows2 = [r for r in metrics_rows(two) if "train/loss" in r]
    for a, b in zip(rows1, rows2, strict=True):
        for key in ("train/loss", "train/grad_norm", "train/num_tokens"):
            assert abs(a[key] - b[key]) <= 1e-5 * max(1.0, abs(a[key])), (key, a[key], b[key])

    # final/: a plain directory (no FSDP class name) that transformers loads with every weight
    from transformers import AutoModelForCausalLM

    config = json.loads((two / "final" / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    loaded = AutoModelForCausalLM.from_pretrained(two / "final").state_dict()
    for name, value in w2.items():
        assert torch.equal(loaded[name], value), name


def test_fsdp_sigkill_then_resume_gives_identical_weights(tmp_path):
    overrides = _overrides(tmp_path, max_steps=6, save_every=2, keep_last=2)
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    uninterrupted = _launch(overrides, plain, tmp_path / "plain.log")
    victim = _launch(overrides, killed, tmp_path / "killed.log")
    deadline = time.monotonic() + 400
    while not (killed / "checkpoints" / "step-2" / COMPLETE).exists():
        assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    # the launcher and both training processes at once (torchrun's workers have sessions of their own)
    tree = [victim, *psutil.Process(victim.pid).children(recursive=True)]
    assert len(tree) >= 3
    for proc in tree:
        proc.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    _finish(uninterrupted, tmp_path / "plain.log")
    assert not (killed / "final").exists(), "the run finished before it was killed; the test proved nothing"
    resumed_from = latest_checkpoint(killed)
    assert (resumed_from / "sharded").is_dir()  # one distributed checkpoint, a file per process
    assert len(list((resumed_from / "sharded").glob("*.distcp"))) == 2

    _finish(_launch(overrides, killed, tmp_path / "resumed.log"), tmp_path / "resumed.log")
    assert f"Resumed from {resumed_from}" in (killed / "run.log").read_text()
    a, b = final_weights(plain), final_weights(killed)
    for name in a:
        assert torch.equal(a[name], b[name]), name

    def rows(run_dir):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in metrics_rows(run_dir)]

    assert rows(killed) == rows(plain)
    assert [s for s, _ in complete_checkpoints(killed)] == [4, 6]


def _initial_weights(compose, cache_dir):
    from sdpo_exp.models import load_model, load_tokenizer
    from sdpo_exp.seeding import seed_everything

    cfg = compose("model=tiny_random")
    seed_everything(cfg.seed)  # what the runner does before the model is built
    tokenizer = load_tokenizer(cfg.model, cache_dir)
    return {k: v.clone() for k, v in load_model(cfg.model, cache_dir, tokenizer).state_dict().items()}


@pytest.mark.parametrize("teacher", ["base", "ema"])
def test_fsdp_lora_two_processes_train_what_one_process_trains(compose, cache_dir, tmp_path, teacher):
    """LoRA under FSDP with the base teacher (the adapters switched off: PEFT's switch on sharded
    layers) and the EMA teacher (an average of the adapters' shards): the final models, merged from
    the gathered state dict and by PEFT, agree."""
    overrides = [
        *_overrides(tmp_path, max_steps=2),
        "model.lora.enabled=true",
        "model.lora.dropout=0.0",
        f"loss.teacher.kind={teacher}",
        "trainer.adam_eps=1e-8",  # adapters start at zero: steps of lr, not lr x gradient
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    run_in_process(compose, one, overrides)
    _finish(_launch(overrides, two, tmp_path / "two.log"), tmp_path / "two.log")
    w1, w2 = final_weights(one), final_weights(two)
    assert w1.keys() == w2.keys() and not any("lora" in k for k in w2)
    start = _initial_weights(compose, cache_dir)
    moved = max((w2[k] - start[k]).abs().max().item() for k in w2)
    assert moved > 1e-4  # the adapters trained and were merged
    gap = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert gap <= 1e-3 * moved, (gap, moved)  # measured 3e-5 of the movement (float32 sums)
