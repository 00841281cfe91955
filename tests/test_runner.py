"""The task wrapper: run.json, metrics.jsonl, summary.json, failures, the run-directory layout."""

from __future__ import annotations

import json
import re

import pytest
from omegaconf import OmegaConf, open_dict

from sdpo_exp.tasks import TASKS
from sdpo_exp.tasks.runner import execute
from test_experiments import FAST_OVERRIDES


@pytest.fixture()
def support_tasks(monkeypatch):
    monkeypatch.setitem(TASKS, "echo", "support_tasks:echo")
    monkeypatch.setitem(TASKS, "boom", "support_tasks:boom")


def _cfg(compose, task: str):
    cfg = compose()
    with open_dict(cfg):
        cfg.task.name = task
    return cfg


def test_execute_writes_run_files(compose, tmp_path, support_tasks):
    metrics = execute(_cfg(compose, "echo"), tmp_path)
    assert metrics["final_loss"] == pytest.approx(1 / 3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["loss"] == 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_loss"] == pytest.approx(1 / 3)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "completed"
    assert run["task"] == "echo"
    assert re.fullmatch(r"[0-9a-f]{40}", run["git"]["commit"] or "0" * 40)
    assert isinstance(run["git"]["dirty"], (bool, type(None)))
    assert run["packages"]["torch"].startswith("2.13")
    assert run["start_time"] <= run["end_time"]
    assert run["host"]


def test_same_seed_same_metrics(compose, tmp_path, support_tasks):
    first = execute(_cfg(compose, "echo"), tmp_path / "a")
    second = execute(_cfg(compose, "echo"), tmp_path / "b")
    read = lambda d: (d / "metrics.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b")
    assert first == second
    cfg = _cfg(compose, "echo")
    cfg.seed = 99
    execute(cfg, tmp_path / "c")
    assert read(tmp_path / "c") != read(tmp_path / "a")


def test_failure_is_recorded_and_files_closed(compose, tmp_path, support_tasks):
    with pytest.raises(RuntimeError, match="intentional failure"):
        execute(_cfg(compose, "boom"), tmp_path)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "failed"
    assert "intentional failure" in run["error"]
    assert run["end_time"] is not None
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 0.5


def test_cli_run_directory_layout(run_cli, tmp_path):
    """A run (here one that fails at once) still leaves the full layout under outputs/<task>/<date>/<time>."""
    proc = run_cli(["task=online", "paths.output_root=" + str(tmp_path / "outputs")])
    assert proc.returncode == 1
    runs = list((tmp_path / "outputs" / "online").glob("*/*"))
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}", run_dir.name)
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / ".hydra" / "overrides.yaml").exists()
    assert "the online tasks need prompt files" in (run_dir / "run.log").read_text()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert saved.task.name == "online"


_TIMING = re.compile(r"seconds|per_s")


def _untimed(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not _TIMING.search(k)} for row in rows]


def test_multirun_layout_and_seeded_training_is_deterministic(run_cli, tmp_path):
    """A sweep of real (tiny) offline training runs: seeds 1, 1, 2 under outputs/<task>/multirun/<date>/<time>/<job>.

    The two seed-1 jobs log identical metrics at every step (timings aside); seed 2 differs."""
    overrides = [o for o in FAST_OVERRIDES["offline_demo"] if not o.startswith("trainer.max_steps")]
    proc = run_cli(
        ["-m", "experiment=offline_demo", *overrides, "trainer.max_steps=2", "seed=1,1,2"]
        + ["paths.output_root=" + str(tmp_path / "outputs")]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "offline" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    sweep = sweeps[0]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", sweep.parent.name)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}", sweep.name)
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2"]
    for job in jobs:
        run = json.loads((sweep / job / "run.json").read_text())
        assert run["status"] == "completed"
        assert (sweep / job / ".hydra" / "config.yaml").exists()
    first, again, other = (_untimed(sweep / job) for job in jobs)
    assert len(first) >= 3  # evaluation at step 0, two training steps, final evaluation
    assert first == again
    assert first != other
