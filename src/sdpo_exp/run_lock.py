"""One live run per run directory: `run.lock` holds the pid and host of the process running there.

A second process refuses to start in a directory whose lock belongs to a live process (a second
launch with the same `hydra.run.dir`, or a resume started while the first run still lives); a lock
left by a process that no longer exists on this host (kill -9, a crash) is taken over, so that
resuming after a kill still works. A lock written by an earlier attempt of the same SLURM job (a
requeued job may restart on another node) is taken over too: SLURM runs one attempt of a job at a
time. Any other lock written on another host is trusted until it is removed (there is no way to
check that process from here): delete `run.lock` if that run is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from sdpo_exp.errors import SdpoError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class RunDirectoryInUse(SdpoError):
    """Another live process runs in this directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def slurm_job() -> str | None:
    """This process's SLURM job (array job and task for a job array), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def holder(run_dir: Path) -> dict[str, Any] | None:
    """The live process holding the directory's lock, or None (no lock, or a stale one)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1))):
        return None
    if info.get("slurm_job") and info.get("slurm_job") == slurm_job():
        return None  # an earlier attempt of this job, which SLURM has ended
    if info.get("host") == socket.gethostname() and int(info.get("pid", -1)) == os.getpid():
        return None
    return info


def describe(info: dict[str, Any]) -> str:
    return f"process {info.get('pid')} on host {info.get('host')} (started {info.get('started', '?')})"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.mine = False

    def acquire(self, started: str) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": started,
            "slurm_job": slurm_job(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = holder(self.path.parent)
                if other is not None:
                    raise RunDirectoryInUse(
                        f"{self.path.parent} is in use by {describe(other)}; wait for that run to end, or "
                        f"choose another hydra.run.dir (delete {self.path} if that run is gone)"
                    ) from None
                log.warning("Taking over the stale lock %s (its process or job attempt is gone)", self.path)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
            self.mine = True
            return
        raise RunDirectoryInUse(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.mine:
            self.path.unlink(missing_ok=True)
            self.mine = False
