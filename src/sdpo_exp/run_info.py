"""`run.json`: what ran, from which code, where and when."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "sdpo-exp",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "peft",
    "hydra-core",
    "omegaconf",
    "submitit",
    "hydra-submitit-launcher",
    "wandb",
    "anthropic",
    "vllm",
    "bitsandbytes",
    "liger-kernel",
)


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(repo: Path | None = None) -> dict[str, Any]:
    repo = repo or Path(__file__).resolve().parent
    commit = _git("rev-parse", "HEAD", cwd=repo)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=repo)
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def slurm_info() -> dict[str, str]:
    keys = (
        "SLURM_JOB_ID",
        "SLURM_ARRAY_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_JOB_NAME",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_NODELIST",
        "SLURM_RESTART_COUNT",
    )
    return {k.lower(): os.environ[k] for k in keys if k in os.environ}


def start_record(task: str, argv: list[str]) -> dict[str, Any]:
    return {
        "task": task,
        "status": "running",
        "start_time": now(),
        "end_time": None,
        "argv": argv,
        "git": git_state(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "slurm": slurm_info() or None,
    }


def write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path)
