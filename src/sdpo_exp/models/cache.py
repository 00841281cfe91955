"""A directory cache whose entries appear atomically and are built once across processes."""

from __future__ import annotations

import fcntl
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_DONE = ".complete"


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, building it first with `build(tmp_dir)` if it is not complete.

    `build` writes into a temporary sibling directory that is renamed onto `target` only when it
    finished, so an interrupted build never leaves an entry that looks complete. Concurrent callers
    (test workers, DDP ranks) wait on a file lock and build it once.
    """
    if (target / _DONE).exists():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if (target / _DONE).exists():
            return target
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / _DONE).write_text("ok\n")
        tmp.rename(target)
    return target
