"""The offline trainer end to end on tiny_random: it learns, it writes what it says, the final model
loads, and bad configurations fail before any work with one clear message."""

from __future__ import annotations

import json

import pytest
import torch
from offline_support import fast_overrides, final_weights, interaction_file, metrics_rows, run_in_process

from sdpo_exp.errors import ConfigError


def test_distillation_loss_decreases_on_a_fixed_set(compose, tmp_path):
    data = interaction_file(tmp_path / "eight.jsonl", 8)
    run_dir = tmp_path / "run"
    overrides = fast_overrides(data, data, max_steps=20, eval_every=5, lr=1e-3, save_final="false")
    summary = run_in_process(compose, run_dir, [*overrides, "loss=full_kl"])
    evals = [r for r in metrics_rows(run_dir) if "eval/loss" in r]
    assert [r["step"] for r in evals] == [0, 5, 10, 15, 20]
    losses = [r["eval/loss"] for r in evals]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.3 * losses[0], losses
    # the student moves towards the teacher: the mean |advantage| shrinks as well
    assert evals[-1]["eval/adv_abs_mean"] < 0.6 * evals[0]["eval/adv_abs_mean"]
    assert summary["eval/loss"] == pytest.approx(losses[-1])
    assert summary["steps"] == 20 and summary["samples_seen"] == 40


def test_outputs_final_model_and_metrics(compose, tmp_path):
    from sdpo_exp.models import load_model, load_tokenizer

    data = interaction_file(tmp_path / "six.jsonl", 6)
    run_dir = tmp_path / "run"
    overrides = fast_overrides(data, data, max_steps=3, global_batch_size=4, lr=1e-3, eval_every=0)
    summary = run_in_process(compose, run_dir, [*overrides, "task.eval_at_start=false"])
    assert summary["global_batch_size"] == 4 and summary["grad_accum_steps"] == 2
    rows = metrics_rows(run_dir)
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3]
    for key in ("train/lr", "train/grad_norm", "train/tokens_per_s", "train/adv_abs_mean", "train/epoch"):
        assert key in train_rows[0], key
    # 6 examples, global batch 4: each epoch is a step of 4 and a short step of 2
    assert [r["train/samples_seen"] for r in train_rows] == [4, 6, 10]
    assert [r["train/epoch"] for r in train_rows] == [0.5, 1.0, 1.5]
    assert [r["step"] for r in rows if "eval/loss" in r] == [3]  # eval_at_end only
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["data/train/records"] == 6 and saved["total_steps"] == 3

    # the same run again in the same directory (no checkpoints): it starts over and replaces the rows
    run_in_process(compose, run_dir, [*overrides, "task.eval_at_start=false"])
    again = metrics_rows(run_dir)
    assert [r["step"] for r in again] == [r["step"] for r in rows]
    assert [r.get("train/loss") for r in again] == [r.get("train/loss") for r in rows]

    cfg = compose("model=tiny_random", f"model.path={run_dir / 'final'}")
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model = load_model(cfg.model, cfg.paths.cache_dir, tokenizer)
    weights = final_weights(run_dir)
    for name, tensor in model.state_dict().items():
        if name in weights:
            assert torch.equal(tensor, weights[name]), name
    assert (
        tokenizer.chat_template
        == load_tokenizer(compose("model=tiny_random").model, cfg.paths.cache_dir).chat_template
    )


def test_record_counts_reach_summary_and_bad_config_fails_early(compose, tmp_path):
    data = interaction_file(tmp_path / "four.jsonl", 4)
    with open(data, "a") as fh:
        fh.write("not json\n")
        fh.write(
            json.dumps({"context": [{"role": "user", "content": "hi"}], "completion": "", "followup": "x"})
            + "\n"
        )
    run_dir = tmp_path / "run"
    overrides = fast_overrides(data, None, max_steps=1, eval_every=0, save_final="false")
    summary = run_in_process(compose, run_dir, overrides)
    assert summary["data/train/records"] == 4
    assert summary["data/train/skipped/invalid_json"] == 1
    assert summary["data/train/skipped/empty_completion"] == 1

    with pytest.raises(ConfigError, match="not a multiple"):
        run_in_process(compose, tmp_path / "bad1", [*overrides, "trainer.global_batch_size=3"])
    with pytest.raises(ConfigError, match="adamw_8bit"):
        run_in_process(compose, tmp_path / "bad2", [*overrides, "trainer.optimizer=adamw_8bit"])
    with pytest.raises(ConfigError, match="eval_path"):
        run_in_process(compose, tmp_path / "bad3", [*overrides, "trainer.eval_every=2"])


def test_counts_are_integers_and_run_log_shows_progress_in_words(run_cli, tmp_path):
    train = interaction_file(tmp_path / "train.jsonl", 8)
    run_dir = tmp_path / "run"
    proc = run_cli([*fast_overrides(train, None, max_steps=2, log_every=1), "trainer.save_final=false",
                    "task.eval_at_start=false", "task.eval_at_end=false", f"hydra.run.dir={run_dir}"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "steps",
        "samples_seen",
        "tokens_seen",
        "data/train/records",
        "global_batch_size",
        "total_steps",
    ):
        assert isinstance(summary[key], int), (key, summary[key])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert isinstance(rows[-1]["train/num_tokens"], int)
    log = (run_dir / "run.log").read_text()
    assert "step 1/2: loss " in log and "step 2/2: loss " in log and "done" in log
    assert "no mixed precision, one process on cpu" in log and " NO " not in log
