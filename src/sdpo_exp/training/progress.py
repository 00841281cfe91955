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


def progress_line(done: int, total: int, unit: str, metrics: dict[str, Any], seconds_per_unit: float) -> str:
    """`step 12/150: loss 0.431, mean |A| 0.32, 512 tokens/s, lr 2.0e-05, about 3 min left` for the log."""
    parts = [f"{unit} {done}/{total}"]
    details = []
    for key, label, fmt in (("train/loss", "loss", "{:.4g}"), ("train/adv_abs_mean", "mean |A|", "{:.3g}"),
                            ("train/tokens_per_s", "tokens/s", "{:.0f}"), ("train/lr", "lr", "{:.1e}")):  # fmt: skip
        if isinstance(metrics.get(key), (int, float)):
            value = fmt.format(metrics[key])
            details.append(f"{value} {label}" if label == "tokens/s" else f"{label} {value}")
    left = max(total - done, 0) * seconds_per_unit
    details.append(f"about {_duration(left)} left" if done < total else "done")
    return parts[0] + ": " + ", ".join(details)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
