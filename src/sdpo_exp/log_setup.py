"""The console log handler: rich, and wide enough not to wrap lines when output is not a terminal."""

from __future__ import annotations

import logging
import shutil
import sys

from rich.console import Console
from rich.logging import RichHandler


def console_handler(level: int | str = logging.NOTSET) -> logging.Handler:
    """Used by conf/hydra/job_logging/rich.yaml through dictConfig's `()` factory key."""
    width = None if sys.stderr.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    console = Console(stderr=True, width=width)
    return RichHandler(level=level, console=console, show_path=False, markup=False, rich_tracebacks=False)
