"""A progress bar on the main process: step, loss, tokens/s and ETA (tqdm, to stderr)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(
        self, total: int, initial: int, enabled: bool, desc: str = "train", unit: str = "step"
    ) -> None:
        self._bar = None
        if not enabled:
            return
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            dynamic_ncols=interactive,
            # When the output is a log file, a line every 30 s instead of a redraw per update.
            mininterval=0.5 if interactive else 30.0,
            file=sys.stderr,
        )

    def update(self, step_metrics: dict[str, Any]) -> None:
        if self._bar is None:
            return
        postfix = {}
        if "train/loss" in step_metrics:
            postfix["loss"] = f"{step_metrics['train/loss']:.4g}"
        if "train/tokens_per_s" in step_metrics:
            postfix["tok/s"] = f"{step_metrics['train/tokens_per_s']:.0f}"
        if "train/lr" in step_metrics:
            postfix["lr"] = f"{step_metrics['train/lr']:.2e}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
