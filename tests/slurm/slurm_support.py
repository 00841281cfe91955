"""A real SLURM cluster on this machine (launchers/slurm_local.sh), brought up once for these tests
on ports of its own and brought down after them, leaving no process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "launchers" / "slurm_local.sh"
NEEDED = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol")


def _left_behind(daemons: list[int], directory: Path) -> list[str]:
    """Daemons still alive, and any process whose command line names `directory` (the jobs' files)."""
    alive = [f"daemon pid {pid}" for pid in daemons if Path(f"/proc/{pid}").exists()]
    out = subprocess.run(["pgrep", "-a", "-f", str(directory)], capture_output=True, text=True)
    return alive + [line for line in out.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment that points sbatch, sinfo and submitit at the test cluster."""
    missing = [name for name in NEEDED if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): run `sudo {SCRIPT} install`")
    if os.geteuid() != 0:
        pytest.skip("slurmd needs root to start jobs as the submitting user on this single-node cluster")
    base = tmp_path_factory.mktemp("slurm-local")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(base), "SLURM_LOCAL_CTLD_PORT": "6917",
           "SLURM_LOCAL_SLURMD_PORT": "6918"}  # fmt: skip
    up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    exports = subprocess.run([str(SCRIPT), "env"], env=env, capture_output=True, text=True, check=True).stdout
    env["SLURM_CONF"] = str(base / "etc" / "slurm.conf")
    env["PATH"] = f"{base / 'bin'}:{env['PATH']}"
    assert str(base / "bin") in exports and env["SLURM_CONF"] in exports
    daemons = [int(p.read_text()) for p in (base / "run").glob("*.pid")]
    assert len(daemons) == 3
    try:
        yield env
    finally:
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        deadline = time.monotonic() + 30
        root = tmp_path_factory.getbasetemp()
        while _left_behind(daemons, root) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _left_behind(daemons, root)
