"""Tracking: local files always, real wandb in offline mode, and no secret in any output."""

from __future__ import annotations

import json
import re
from pathlib import Path

from omegaconf import open_dict

from sdpo_exp.tasks import TASKS
from sdpo_exp.tasks.runner import execute
from sdpo_exp.tracking import Tracker

SECRET = "sk-ant-test-0123456789abcdef-SECRET"


def test_tracker_writes_steps_and_summary(tmp_path):
    tracker = Tracker(tmp_path)
    tracker.log({"loss": 1.5, "nan": float("nan")}, step=3)
    tracker.log_summary({"final": 2})
    tracker.close()
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row == {"step": 3, "loss": 1.5, "nan": "nan"}
    assert json.loads((tmp_path / "summary.json").read_text()) == {"final": 2}


def test_disabled_tracker_writes_nothing(tmp_path):
    tracker = Tracker(tmp_path, enabled=False)
    tracker.log({"loss": 1.0}, step=1)
    tracker.log_summary({"a": 1})
    tracker.close()
    assert list(tmp_path.iterdir()) == []


def _all_text(root: Path) -> str:
    chunks = []
    for path in root.rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", errors="ignore"))
    return "\n".join(chunks)


def test_wandb_offline_run_and_no_secrets(compose, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "echo", "support_tasks:echo")
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    cfg = compose("logger=wandb", "logger.mode=offline")
    with open_dict(cfg):
        cfg.task.name = "echo"
    execute(cfg, tmp_path / "run")
    offline_runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("*.wandb"))
    assert SECRET not in _all_text(tmp_path)


def test_a_resumed_run_keeps_one_wandb_run(compose, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "echo", "support_tasks:echo")
    monkeypatch.chdir(tmp_path)
    cfg = compose("logger=wandb", "logger.mode=offline")
    with open_dict(cfg):
        cfg.task.name = "echo"
    execute(cfg, tmp_path / "run")
    execute(cfg, tmp_path / "run")  # started again in the same run directory, as a resume is
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    # offline-run-<time>-<id>, with "-1" appended by wandb when both started in the same second
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)(-\d+)?", r.name).group(1) for r in runs}
    assert ids == {run_id}
