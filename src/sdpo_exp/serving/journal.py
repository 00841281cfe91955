"""Append-only JSON-lines files that survive a kill: one line per record, flushed and fsynced.

Each record is written with a single `write` of the whole line on a file opened for appending, then
flushed and synced, so a killed process leaves whole lines only (a write of a regular file is not
cut by a signal). If a machine crash still left a torn last line, the next start cuts that partial
tail off (logged) before appending again; lines already written are never rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The complete, valid JSON objects of a journal, in order (a torn or invalid line is skipped)."""
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                log.warning("%s:%d is incomplete (a crash while writing?): ignored", path, number)
                return
            try:
                record = json.loads(raw)
            except ValueError:
                log.warning("%s:%d is not valid JSON: ignored", path, number)
                continue
            if isinstance(record, dict):
                yield record


def _cut_torn_tail(path: Path) -> None:
    """Remove a last line without its newline (only a machine crash mid-write leaves one)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        log.warning("%s ends with a partial line (%d bytes): cut off", path, len(data) - keep)
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


class Journal:
    """One append-only JSON-lines file, safe to write from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, line)
            while written < len(line):  # a regular file takes it whole; loop for safety
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)

    def records(self) -> list[dict[str, Any]]:
        return list(read_records(self.path))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
