"""task=online end to end on tiny_random with the rule-based user: the files agree with each other,
schedules switch where they should, and task=offline replays what an online run trained on."""

from __future__ import annotations

import json

import pytest
from online_support import jsonl, online_overrides

from sdpo_exp.config.schemas.task_online import OnlineTaskConfig
from sdpo_exp.data.reader import read_interactions
from sdpo_exp.errors import ConfigError
from sdpo_exp.users.profiles import load_profile
from sdpo_exp.users.schedule import make_schedule

from conftest import run_in_process


def test_online_run_writes_files_that_agree(compose, tmp_path):
    run_dir = tmp_path / "run"
    summary = run_in_process(compose, run_dir, online_overrides())
    interactions = jsonl(run_dir / "interactions.jsonl")
    assert len(interactions) == 16  # 4 batches of 4; the rule-based user always answers
    assert [r["batch"] for r in interactions] == [b for b in range(4) for _ in range(4)]
    assert {r["profile"] for r in interactions} == {"no_emojis"}
    assert all(r["completion_ids"] and r["followup"] for r in interactions)
    # each prompt of an epoch (64 prompts) is used once: no repeats within these 16
    assert len({r["prompt_id"] for r in interactions}) == 16

    rows = jsonl(run_dir / "winrate.jsonl")
    assert [r["interactions"] for r in rows] == [0, 8, 16]
    assert all(r["profile"] == "no_emojis" and r["baseline"] == "base" and r["pairs"] == 4 for r in rows)
    assert rows[0]["ties"] == 4  # the base model against itself
    for r in rows:
        assert r["wins"] + r["losses"] + r["ties"] == r["pairs"]
        assert "reply/share_emojis" in r and "reply/mean_words" in r

    train_rows = [r for r in jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    assert [r["online/interactions_trained"] for r in train_rows] == [4, 8, 12, 16]
    assert summary["interactions"] == 16 and summary["steps"] == 4 and summary["interactions_offered"] == 16
    assert summary["simulator/calls"] == 16
    phases = ("generate_seconds", "simulate_seconds", "update_seconds", "sync_seconds")
    assert all(summary[k] > 0 for k in (*phases, "eval_seconds")), summary
    assert (
        sum(summary[k] for k in phases) <= summary["train_seconds"]
    )  # the phases lie inside the loop's time
    spent = summary["train_seconds"] + summary["eval_seconds"]
    assert summary["interactions_per_minute"] == 60 * 16 / spent
    base = jsonl(run_dir / "eval_replies" / "base.jsonl")
    assert [b["reply"] for b in base] == [b["reply"] for b in jsonl(run_dir / "eval_replies" / "at_0.jsonl")]
    report = (run_dir / "report.md").read_text()
    assert (
        "## Win rates" in report
        and "no_emojis" in report
        and "## Interactions at the end of training" in report
    )
    assert (run_dir / "winrate.png").stat().st_size > 10_000
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def test_offline_replays_an_online_run(compose, tmp_path):
    online = tmp_path / "online"
    run_in_process(compose, online, online_overrides(num_interactions=8, eval_every=0, eval_at_start="false"))
    path = online / "interactions.jsonl"
    read = read_interactions(path)
    assert read.lines == 8 and len(read.interactions) == 8 and not read.skipped
    assert all(i.completion_ids for i in read.interactions)  # the sampled ids, not re-tokenised text
    offline = tmp_path / "offline"
    summary = run_in_process(compose, offline, [
        "task=offline", "model=tiny_random", "dataset=interactions", f"dataset.train_path={path}",
        "trainer.max_prompt_tokens=128", "trainer.max_completion_tokens=16", "trainer.per_device_batch_size=4",
        "trainer.max_steps=2", "task.progress_bar=false", "task.eval_at_start=false", "task.eval_at_end=false",
    ])  # fmt: skip
    assert summary["data/train/usable"] == 8 and summary["steps"] == 2


def _task(**kw):
    from omegaconf import OmegaConf

    return OmegaConf.merge(OmegaConf.structured(OnlineTaskConfig), kw)


def test_schedules_switch_at_batch_boundaries():
    base = load_profile("no_emojis")
    flip = make_schedule(_task(schedule="flip", flip_after=6, num_interactions=16), base, batch_size=4)
    assert flip.switch_points == [8]  # 6 is inside the second batch: the flip takes effect at 8
    assert [flip.profile_at(n).name for n in (0, 4, 8, 12)] == ["no_emojis"] * 2 + ["loves_emojis"] * 2
    seq = make_schedule(
        _task(schedule="sequential", profiles=["no_emojis", "no_lists", "brief"], switch_every=8), base, 4
    )
    assert seq.switch_points == [8, 16] and [p.name for p in seq.profiles] == [
        "no_emojis",
        "no_lists",
        "brief",
    ]
    assert seq.profile_at(15).name == "no_lists" and seq.start_of(load_profile("brief")) == 16
    with pytest.raises(ConfigError, match="flip_after"):
        make_schedule(_task(schedule="flip", flip_after=20, num_interactions=16), base, 4)
    with pytest.raises(ConfigError, match="names no opposite"):
        make_schedule(_task(schedule="flip", flip_after=4, num_interactions=16), load_profile("no_code"), 4)


def test_flip_run_trains_on_the_opposite_after_the_switch_and_judges_both(compose, tmp_path):
    run_dir = tmp_path / "flip"
    run_in_process(compose, run_dir, online_overrides(schedule="flip", flip_after=6, eval_every=0))
    profiles = [(r["batch"], r["profile"]) for r in jsonl(run_dir / "interactions.jsonl")]
    assert {p for b, p in profiles if b < 2} == {"no_emojis"} and {p for b, p in profiles if b >= 2} == {
        "loves_emojis"
    }
    rows = jsonl(run_dir / "winrate.jsonl")
    assert sorted({(r["interactions"], r["profile"], r["baseline"]) for r in rows}) == [
        (0, "loves_emojis", "base"), (0, "no_emojis", "base"),
        (8, "loves_emojis", "base"), (8, "loves_emojis", "start@8"), (8, "no_emojis", "base"),
        (16, "loves_emojis", "base"), (16, "loves_emojis", "start@8"), (16, "no_emojis", "base"),
    ]  # fmt: skip
    # the comparison with the flip's start: at 8 the policy against itself (all ties), then its replies at 8
    at8 = next(r for r in rows if r["interactions"] == 8 and r["baseline"] == "start@8")
    assert at8["ties"] == at8["pairs"]
    start = jsonl(run_dir / "eval_replies" / "start_loves_emojis.jsonl")
    assert start == jsonl(run_dir / "eval_replies" / "at_8.jsonl")
    assert (run_dir / "winrate.png").is_file()


def test_missing_prompt_files_are_a_clear_error(compose, tmp_path):
    from sdpo_exp.tasks.runner import execute

    cfg = compose(*online_overrides(), "dataset=prompts")
    with pytest.raises(ConfigError, match="dataset.train_path is not set"):
        execute(cfg, tmp_path / "run")
