"""Log handlers for conf/hydra/job_logging/rich.yaml: the console through rich, the run's log file."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler


def process_rank() -> int:
    """This process's rank in a multi-process run (torchrun, srun, submitit), 0 when alone."""
    for name in ("RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def console_handler(level: int | str = logging.NOTSET) -> logging.Handler:
    """The console, wide enough not to wrap lines when output is not a terminal."""
    width = None if sys.stderr.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    console = Console(stderr=True, width=width)
    return RichHandler(level=level, console=console, show_path=False, markup=False, rich_tracebacks=False)


def file_handler(filename: str, level: int | str = logging.NOTSET) -> logging.Handler:
    """`run.log` for the main process; the other processes of one run write `run.rank<N>.log` beside it."""
    rank = process_rank()
    path = Path(filename)
    if rank > 0:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(level)
    return handler
