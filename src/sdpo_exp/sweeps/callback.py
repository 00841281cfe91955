"""The Hydra callback that writes a multirun's summary when the sweep ends (conf/config.yaml).

Hydra calls `on_multirun_end` only when every job succeeded; run.py calls `write_pending` after a
multirun ends either way, so that a sweep with failed jobs gets its summary too."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sdpo_exp.sweeps.summary import summarize

log = logging.getLogger(__name__)

_PENDING: list[Path] = []  # sweep directories started in this process, summary not yet written


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _PENDING.append(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_pending()


def write_pending() -> None:
    """Summarise the sweeps this process started (once each); never raises."""
    while _PENDING:
        sweep_dir = _PENDING.pop()
        try:
            summarize(sweep_dir)
        except Exception as exc:  # the summary must not hide the sweep's own outcome
            log.error("Could not write the summary of %s: %s", sweep_dir, exc)
