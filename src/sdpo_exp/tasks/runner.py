"""The task wrapper: run.json, seeding, tracker, dispatch, and a clean exit whatever happens."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

from omegaconf import DictConfig

from sdpo_exp import run_info
from sdpo_exp.config.values import check_values
from sdpo_exp.errors import ConfigError, SdpoError
from sdpo_exp.log_setup import process_rank
from sdpo_exp.run_lock import RunLock
from sdpo_exp.seeding import seed_everything
from sdpo_exp.tasks import check_optimized_metric, get_task, task_config
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.tracking import Tracker, make_tracker
from sdpo_exp.training.distributed import export_job_distribution
from sdpo_exp.training.preemption import Preempted

log = logging.getLogger(__name__)


def _earlier_attempts(path: Path) -> list[dict]:
    """The attempts recorded in an existing run.json (a resumed or requeued run), oldest first."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    keep = ("status", "start_time", "end_time", "host", "slurm", "error")
    return [*old.get("attempts", []), {k: old.get(k) for k in keep if old.get(k) is not None}]


def _write_task_config(cfg: DictConfig, run_dir: Path, plain: dict, unused: list[str]) -> None:
    """`config.yaml`: the resolved config as the task reads it (the full composition is in .hydra/)."""
    import yaml

    head = f"# The resolved config of this {cfg.task.name} run"
    head += f"; groups it does not read left out: {', '.join(unused)}\n" if unused else "\n"
    (run_dir / "config.yaml").write_text(head + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))


def execute(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Run `cfg.task` in `run_dir`; write run.json and summary.json; re-raise any failure. A run stopped
    by preemption or its time limit is recorded as such, then handed over (requeue or exit)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    export_job_distribution()  # the tasks of a multi-task SLURM job become one distributed run
    main = process_rank() == 0
    record = run_info.start_record(cfg.task.name, sys.argv)
    lock = RunLock(run_dir)
    if main:  # refuses a directory another live run holds, before writing anything in it
        lock.acquire(str(record.get("start_time", "")))
        attempts = _earlier_attempts(run_dir / "run.json")
        record["restart_count"] = len(attempts)  # earlier starts in this directory (requeues, resumes)
        if attempts:
            record["attempts"] = attempts
        run_info.write(run_dir / "run.json", record)
        plain, unused = task_config(cfg)
        _write_task_config(cfg, run_dir, plain, unused)
    tracker = make_tracker(cfg, run_dir, plain) if main else Tracker(run_dir, enabled=False)
    exit_code = 1
    stopped: Preempted | None = None
    try:
        check_values(cfg)  # before anything loads (run.py checked already; in-process callers too)
        check_optimized_metric(str(cfg.task.name), cfg.get("optimized_metric"))
        generator = seed_everything(cfg.seed)
        task = get_task(cfg.task.name)
        ctx = RunContext(run_dir=run_dir, tracker=tracker, generator=generator, is_main_process=main)
        log.info("Task %s: outputs in %s", cfg.task.name, run_dir)
        metrics = task(cfg, ctx) or {}
        wanted = cfg.get("optimized_metric")
        if wanted and wanted not in metrics:
            raise ConfigError(
                f"optimized_metric '{wanted}' is not among this run's final metrics (for example an eval metric "
                f"without eval data): {', '.join(sorted(metrics))}"
            )
        if main:
            tracker.log_summary(metrics)
        record["status"] = "completed"
        exit_code = 0
        log.info("Done. Outputs in %s", run_dir.resolve())
        return metrics
    except Preempted as exc:
        stopped = exc
        record["status"] = exc.status
        record["error"] = str(exc)
        log.warning("%s", exc)
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        raise
    except SdpoError as exc:
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        log.error("%s", exc)
        raise
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = "".join(traceback.format_exception_only(exc)).strip()
        log.exception("Task %s failed", cfg.task.name)
        raise
    finally:
        record["end_time"] = run_info.now()
        if main:  # first: nothing below may keep the run's record from being written
            run_info.write(run_dir / "run.json", record)
        tracker.close(exit_code, preempting=stopped is not None)
        lock.release()
    assert stopped is not None  # every other way out of the try returned or raised
    try:
        stopped.hand_over()
    except Exception as exc:  # submitit refused to requeue (e.g. timed out too many times)
        record["status"] = "failed"
        record["error"] = f"{exc}".strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if main:
            run_info.write(run_dir / "run.json", record)
        raise
