"""Multirun sweeps through Hydra's submitit launcher on a real SLURM cluster (tests/slurm/conftest.py):
job ids and statuses in run.json, the sweep summary, a failing job, requeue after the time limit and
after preemption with exact resume, and one training run across the tasks of a job."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import REPO, final_weights
from slurm_support import slurm  # noqa: F401 (the cluster fixture)

DEMO = REPO / "src" / "sdpo_exp" / "resources" / "offline_demo" / "train.jsonl"
TINY = ["task=offline", "model=tiny_random", "dataset=interactions", "dataset.eval_path=null",
        "trainer.max_prompt_tokens=96", "trainer.max_completion_tokens=24", "trainer.per_device_batch_size=2",
        "task.progress_bar=false", "task.eval_at_start=false"]  # fmt: skip
SLURM = ["hydra/launcher=slurm", "resources=cpu", "hydra.launcher.mem_gb=2", "hydra.launcher.cpus_per_task=1"]


def _train_file(tmp_path: Path, n: int = 8) -> Path:
    path = tmp_path / f"train{n}.jsonl"
    path.write_text("\n".join(DEMO.read_text().splitlines()[:n]) + "\n")
    return path


def _multirun(args: list[str], env: dict, log: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, str(REPO / "run.py"), "-m", *args], cwd=REPO, env=env,
                              stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)  # fmt: skip
    return done


def _record(job_dir: Path) -> dict:
    return json.loads((job_dir / "run.json").read_text())


def test_a_two_point_sweep_runs_on_slurm_and_is_summarised(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    train = _train_file(tmp_path)
    done = _multirun([*SLURM, *TINY, f"dataset.train_path={train}", "trainer.lr=1e-4,3e-4",
                      "optimized_metric=train/loss", f"hydra.sweep.dir={sweep}"], slurm, tmp_path / "log")  # fmt: skip
    assert done.returncode == 0, (tmp_path / "log").read_text()[-3000:]
    ids = set()
    for job in ("0", "1"):
        record = _record(sweep / job)
        assert record["status"] == "completed" and record["restart_count"] == 0
        assert record["slurm"]["slurm_job_id"].isdigit()
        ids.add(f"{record['slurm']['slurm_array_job_id']}_{record['slurm']['slurm_array_task_id']}")
        assert (sweep / job / "final" / "model.safetensors").is_file()
    assert len(ids) == 2
    rows = list(csv.DictReader(open(sweep / "sweep_summary.csv")))
    assert [(r["job"], r["status"], r["trainer.lr"]) for r in rows] == [("0", "completed", "0.0001"),
                                                                       ("1", "completed", "0.0003")]  # fmt: skip
    assert {r["slurm_job"] for r in rows} == ids
    losses = [float(r["train/loss"]) for r in rows]
    table = (sweep / "sweep_summary.md").read_text()
    assert "2 jobs: 2 completed" in table and "Sorted by `train/loss` (lower is better)" in table
    best = str(sorted(zip(losses, ("0", "1"), strict=True))[0][1])
    assert table.split("|---|")[-1].splitlines()[1].startswith(f"| {best} |")  # best job first
    assert (sweep / "sweep_summary.png").stat().st_size > 5000


def test_a_failing_job_fails_the_sweep_and_the_summary_names_its_error(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    train = _train_file(tmp_path)
    missing = tmp_path / "missing.jsonl"
    done = _multirun([*SLURM, *TINY, f"dataset.train_path={train},{missing}", f"hydra.sweep.dir={sweep}"],
                     slurm, tmp_path / "log")  # fmt: skip
    assert done.returncode == 1
    assert _record(sweep / "0")["status"] == "completed"
    assert _record(sweep / "1")["status"] == "failed"
    rows = {r["job"]: r for r in csv.DictReader(open(sweep / "sweep_summary.csv"))}
    assert rows["0"]["status"] == "completed" and rows["0"]["error"] == ""
    assert rows["1"]["status"] == "failed"
    assert rows["1"]["error"] == f"DataError: interaction file not found: {missing}"
    assert f"interaction file not found: {missing}" in (sweep / "sweep_summary.md").read_text()
    # the same table on demand, from another process
    again = subprocess.run(
        [sys.executable, "-m", "sdpo_exp.sweeps", str(sweep)], capture_output=True, text=True
    )
    assert again.returncode == 0 and "1 completed, 1 failed" in again.stdout


def _wait_for(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + log.read_text()[-3000:]
        time.sleep(0.5)


def _steps_logged(job_dir: Path) -> int:
    path = job_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])["step"] if lines else 0


def test_time_limit_and_preemption_requeue_and_resume_exactly(slurm, tmp_path):
    """Job 0 runs into its 2-minute limit (USR2: checkpoint, submitit requeues it); job 1 is requeued
    as by preemption (SIGTERM: checkpoint, SLURM requeues it). Both end with the weights of a run
    that was never interrupted, bit for bit, and keep one wandb run (offline) across attempts."""
    steps = 1500
    train = _train_file(tmp_path, 139)
    run_args = [*TINY, f"dataset.train_path={train}", f"trainer.max_steps={steps}", "trainer.save_every=0",
                "trainer.log_every=10"]  # fmt: skip
    reference = tmp_path / "reference"
    env = {**slurm, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    with open(tmp_path / "reference.log", "w") as fh:
        plain = subprocess.Popen([sys.executable, str(REPO / "run.py"), *run_args, f"hydra.run.dir={reference}"],
                                 cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
    sweep, log = tmp_path / "sweep", tmp_path / "sweep.log"
    launcher = [
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=45",
        "hydra.launcher.max_num_timeout=6",
    ]
    with open(log, "w") as fh:
        multirun = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), "-m", *SLURM, *launcher, *run_args, "logger=wandb",
             "experiment_name=time_limit,preempted", f"hydra.sweep.dir={sweep}"],
            cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(lambda: _steps_logged(sweep / "1") >= 20, 240, "job 1 to train", log)
        job = _record(sweep / "1")["slurm"]
        requeue = subprocess.run(
            ["scontrol", "requeue", f"{job['slurm_array_job_id']}_{job['slurm_array_task_id']}"],
            env=slurm, capture_output=True, text=True,
        )  # fmt: skip
        assert requeue.returncode == 0, requeue.stderr
        # the summary on demand while the jobs run: both listed, neither finished
        live = subprocess.run([sys.executable, "-m", "sdpo_exp.sweeps", str(sweep)], env=slurm, capture_output=True,
                              text=True)  # fmt: skip
        assert live.returncode == 0, live.stderr
        rows = {r["job"]: r for r in csv.DictReader(open(sweep / "sweep_summary.csv"))}
        assert set(rows) == {"0", "1"}
        assert {r["status"] for r in rows.values()} <= {"running", "preempted", "requeued"}, rows
        assert multirun.wait(timeout=900) == 0, log.read_text()[-4000:]
        assert plain.wait(timeout=600) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    finally:
        for proc in (multirun, plain):
            if proc.poll() is None:
                proc.kill()
    expected = final_weights(reference)
    for job, signal_status in (("0", "requeued"), ("1", "preempted")):
        record = _record(sweep / job)
        assert record["status"] == "completed", record
        statuses = [a["status"] for a in record["attempts"]]
        assert signal_status in statuses, statuses
        assert record["restart_count"] == len(statuses) >= 1
        assert "failed" not in statuses
        assert json.loads((sweep / job / "summary.json").read_text())["steps"] == steps
        text = (sweep / job / "run.log").read_text()
        assert "Resumed from" in text
        # one wandb run across the attempts: every attempt's offline run carries the same id
        run_id = (sweep / job / "wandb_run_id").read_text().strip()
        offline = sorted((sweep / job / "wandb").glob("offline-run-*"))
        assert len(offline) == len(statuses) + 1 and all(p.name.endswith(f"-{run_id}") for p in offline), (
            offline
        )
        got = final_weights(sweep / job)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected), (
            f"job {job} differs from the reference"
        )
    rows = {r["job"]: r for r in csv.DictReader(open(sweep / "sweep_summary.csv"))}
    assert all(rows[j]["status"] == "completed" and int(rows[j]["restarts"]) >= 1 for j in ("0", "1"))


def test_two_tasks_per_node_train_one_model_in_one_run_directory(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    train = _train_file(tmp_path)
    args = [*SLURM, "hydra.launcher.tasks_per_node=2", *TINY, f"dataset.train_path={train}",
            "trainer.global_batch_size=4", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    done = _multirun(args, slurm, tmp_path / "log")
    assert done.returncode == 0, (tmp_path / "log").read_text()[-3000:]
    assert [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")] == ["0"]
    job = sweep / "0"
    summary = json.loads((job / "summary.json").read_text())
    assert (
        summary["num_processes"] == 2
        and summary["grad_accum_steps"] == 1
        and summary["global_batch_size"] == 4
    )
    assert _record(job)["slurm"]["slurm_ntasks"] == "2"
    assert "data parallel over gloo, 2 processes" in (job / "run.log").read_text()
    assert "Process 1 of 2" in (job / "run.rank1.log").read_text()
    assert "Process 1 of 2" not in (job / "run.log").read_text()
    # the same global batch in one process (two micro-batches accumulated): the same model
    single = tmp_path / "single"
    plain = subprocess.run([sys.executable, str(REPO / "run.py"), *TINY, f"dataset.train_path={train}",
                            "trainer.global_batch_size=4", f"hydra.run.dir={single}"],
                           cwd=REPO, env={**slurm, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert json.loads((single / "summary.json").read_text())["grad_accum_steps"] == 2
    two, one = final_weights(job), final_weights(single)
    worst = max((two[k] - one[k]).abs().max().item() for k in one)
    assert worst < 1e-6, worst


def test_a_benchmark_multirun_over_checkpoints_runs_on_slurm_and_ranks_its_jobs(
    slurm, tmp_path, tiny_tokenizer
):
    """task=benchmark like any task: one SLURM job per checkpoint, each returning benchmark/<name>, the
    sweep summary sorted by it."""
    from sdpo_exp.models import load_model

    from conftest import CACHE_DIR, model_cfg

    torch.manual_seed(5)
    other = tmp_path / "other_model"
    load_model(model_cfg("tiny_random"), CACHE_DIR, tiny_tokenizer).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    sweep = tmp_path / "sweep"
    done = _multirun([*SLURM, "task=benchmark", "model=tiny_random", "benchmark=demo_suite",
                      "benchmark.benchmarks=[hellaswag]", "benchmark.limit=8", f"task.models=[base],[{other}]",
                      "optimized_metric=benchmark/hellaswag", f"hydra.sweep.dir={sweep}"], slurm, tmp_path / "log")  # fmt: skip
    assert done.returncode == 0, (tmp_path / "log").read_text()[-3000:]
    scores = {}
    for job in ("0", "1"):
        record = _record(sweep / job)
        assert record["status"] == "completed" and record["slurm"]["slurm_job_id"].isdigit()
        cells = json.loads((sweep / job / "benchmarks.json").read_text())["cells"]
        (cell,) = [c for c in cells if c["metric"] == "acc_norm"]
        scores[job] = json.loads((sweep / job / "summary.json").read_text())["benchmark/hellaswag"]
        assert scores[job] == cell["value"] and cell["n"] == 8
    rows = list(csv.DictReader(open(sweep / "sweep_summary.csv")))
    assert {r["job"]: float(r["benchmark/hellaswag"]) for r in rows} == scores
    table = (sweep / "sweep_summary.md").read_text()
    assert "Sorted by `benchmark/hellaswag` (higher is better)" in table
    best = max(scores, key=lambda j: (scores[j], -int(j)))
    assert table.split("|---|")[-1].splitlines()[1].startswith(f"| {best} |")
