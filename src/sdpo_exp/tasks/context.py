"""What a task receives besides its config: the run directory, the tracker, the data RNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sdpo_exp.tracking import Tracker


@dataclass
class RunContext:
    run_dir: Path
    tracker: Tracker
    generator: torch.Generator
    is_main_process: bool = True

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.is_main_process:
            self.tracker.log(metrics, step)
