"""Sweeps without SLURM: the same submitit path with local processes, an Optuna search, and the
summary of each (tests/slurm/ runs sweeps on a real SLURM cluster)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import yaml

from conftest import REPO

DEMO = REPO / "src" / "sdpo_exp" / "resources" / "offline_demo" / "train.jsonl"
TINY = ["task=offline", "model=tiny_random", "dataset=interactions", "trainer.max_prompt_tokens=96",
        "trainer.max_completion_tokens=24", "trainer.per_device_batch_size=2", "task.progress_bar=false"]  # fmt: skip


def _run(args, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(DEMO.read_text().splitlines()[:8]) + "\n")
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, str(REPO / "run.py"), "-m", *TINY, f"dataset.train_path={train}", *args],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    return done, train


def test_a_local_submitit_sweep_of_two_task_jobs_records_its_jobs_and_summary(tmp_path):
    sweep = tmp_path / "sweep"
    done, _ = _run(["hydra/launcher=local", "resources=cpu", "hydra.launcher.tasks_per_node=2", "dataset.eval_path=null", "trainer.lr=1e-4,1e-3",
                    "optimized_metric=train/loss", f"hydra.sweep.dir={sweep}"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(open(sweep / "sweep_summary.csv")))
    assert [(r["job"], r["status"], r["trainer.lr"]) for r in rows] == [("0", "completed", "0.0001"),
                                                                       ("1", "completed", "0.001")]  # fmt: skip
    assert all(r["slurm_job"] for r in rows)  # submitit's local job ids
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert float(next(r for r in rows if r["job"] == job)["train/loss"]) == summary["train/loss"]
        assert summary["num_processes"] == 2  # the job's two tasks trained one model
        assert "Process 1 of 2" in (sweep / job / "run.rank1.log").read_text()


def test_an_optuna_search_optimises_the_returned_metric_and_is_summarised(tmp_path):
    sweep = tmp_path / "search"
    done, train = _run(["experiment=offline_demo", "hparams_search=offline_optuna", "model=tiny_random",
                        "model.dtype=float32", "trainer.precision=no", "hydra.sweeper.n_trials=3",
                        "hydra.sweeper.n_jobs=3", f"hydra.sweep.dir={sweep}"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    rows = list(csv.DictReader(open(sweep / "sweep_summary.csv")))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
    values = sorted(float(r["eval/adv_abs_mean"]) for r in rows)
    assert best["best_value"] == values[0]  # Optuna minimised what run.py returned
    table = (sweep / "sweep_summary.md").read_text()
    assert "Sorted by `eval/adv_abs_mean` (lower is better)" in table
    header = next(line for line in table.splitlines() if line.startswith("| job"))
    for key in ("trainer.lr", "trainer.warmup_ratio", "loss.center_advantages", "loss.ignore_first_k"):
        assert key in header
    first = table.split("|---|")[-1].splitlines()[1]
    assert f"| {values[0]:.4g} |" in first


def test_the_summary_command_refuses_a_directory_without_jobs(tmp_path):
    empty = subprocess.run(
        [sys.executable, "-m", "sdpo_exp.sweeps", str(tmp_path)], capture_output=True, text=True
    )
    assert empty.returncode == 2 and "has no jobs" in empty.stderr
    missing = subprocess.run([sys.executable, "-m", "sdpo_exp.sweeps", str(tmp_path / "nope")], capture_output=True,
                             text=True)  # fmt: skip
    assert missing.returncode == 2 and "no sweep directory" in missing.stderr
