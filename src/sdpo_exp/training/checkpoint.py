"""Atomic checkpoints under `<run dir>/checkpoints/step-<N>/`, keeping the last K, and their loading.

A checkpoint is written to `checkpoints/.tmp-step-<N>/` by every process (accelerate's state: model,
optimiser, registered objects such as the scheduler; plus each process's RNG states), then, once all
processes are done, the main process writes `trainer_state.json` and the `COMPLETE` marker, syncs the
files to disk and renames the directory to `step-<N>`. A crash at any point before the rename leaves
only a `.tmp-*` directory, which is never taken for a checkpoint (and is removed at the next start).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from sdpo_exp.seeding import rng_state, set_rng_state

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in the run directory, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / COMPLETE).is_file() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1][1] if found else None


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointManager:
    def __init__(self, accelerator: Any, run_dir: str | Path, keep_last: int, strategy: Any = None) -> None:
        """`strategy` writes and reads the model's, optimiser's and registered objects' state
        (`training.strategy`; accelerate's own state files when None)."""
        self.accelerator = accelerator
        self.strategy = strategy
        self.root = Path(run_dir) / CHECKPOINTS_DIR
        self.keep_last = int(keep_last)

    @property
    def _main(self) -> bool:
        return self.accelerator.is_main_process

    def remove_incomplete(self) -> None:
        """Delete what interrupted saves left behind (main process), then wait for everyone."""
        if self._main and self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.startswith(_TMP_PREFIX):
                    log.warning("Removing the incomplete checkpoint %s (an interrupted save)", path)
                    shutil.rmtree(path, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def save(self, step: int, state: dict[str, Any]) -> Path:
        final = self.root / f"step-{step}"
        tmp = self.root / f"{_TMP_PREFIX}step-{step}"
        if self._main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        if self.strategy is not None:
            self.strategy.save(tmp)
        else:
            self.accelerator.save_state(str(tmp))
        torch.save(rng_state(), tmp / f"rng_rank{self.accelerator.process_index}.pt")
        self.accelerator.wait_for_everyone()
        if self._main:
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
            (tmp / COMPLETE).write_text(f"step {step}\n")
            _fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            _fsync_dir(self.root)
            self._prune()
            log.info("Checkpoint saved: %s", final)
        self.accelerator.wait_for_everyone()
        return final

    def _prune(self) -> None:
        if self.keep_last <= 0:
            return
        for _, path in complete_checkpoints(self.root.parent)[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)
            log.info("Removed old checkpoint %s (keep_last=%d)", path, self.keep_last)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore model, optimiser, registered objects and this process's RNG states; return the
        trainer state saved with them."""
        path = Path(path)
        if self.strategy is not None:
            self.strategy.load(path)
        else:
            self.accelerator.load_state(str(path))
        rng_file = path / f"rng_rank{self.accelerator.process_index}.pt"
        if rng_file.is_file():
            set_rng_state(torch.load(rng_file, weights_only=False))
        else:
            log.warning(
                "%s has no RNG state for process %d (written with fewer processes): the run continues, "
                "but not bitwise as an uninterrupted one would",
                path,
                self.accelerator.process_index,
            )
        return json.loads((path / STATE_FILE).read_text())
