"""Metric tracking: the run directory's own files, and Weights & Biases when asked."""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdpo_exp.config.schemas.logger import LoggerBackend, WandbMode

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"


def _clean(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[key] = value
    return out


class Tracker:
    """Writes `metrics.jsonl` (one object per logged step) and `summary.json`; optionally wandb."""

    def __init__(self, run_dir: Path, wandb_run: Any = None, enabled: bool = True) -> None:
        """`enabled=False` (non-main processes) makes every method a no-op."""
        self.run_dir = run_dir
        self.enabled = enabled
        self._metrics = open(run_dir / "metrics.jsonl", "a", buffering=1) if enabled else None
        self._wandb = wandb_run
        self.summary: dict[str, Any] = {}

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **_clean(metrics)}
        self._metrics.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            self._wandb.log(_clean(metrics), step=int(step))

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.summary.update(_clean(metrics))
        tmp = self.run_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, default=str) + "\n")
        tmp.replace(self.run_dir / "summary.json")
        if self._wandb is not None:
            self._wandb.summary.update(_clean(metrics))

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Record settings the run derived (e.g. the accumulation a global batch size implies) in the
        tracker's config, so that it shows what the run used."""
        if self.enabled and self._wandb is not None:
            self._wandb.config.update(_clean(values), allow_val_change=True)

    def close(self, exit_code: int = 0, preempting: bool = False) -> None:
        """`preempting`: the run stops to resume later (wandb shows it as preempted, not crashed)."""
        if self._metrics is not None and not self._metrics.closed:
            self._metrics.close()
        if self._wandb is not None:
            run, self._wandb = self._wandb, None
            try:
                if preempting:
                    run.mark_preempting()
                run.finish(exit_code=exit_code)
            except Exception as exc:  # e.g. its service process killed by the same SLURM signal
                log.warning("wandb could not close its run cleanly (%s: %s); the run's own files are "
                            "complete", type(exc).__name__, exc)  # fmt: skip


class PartTracker(Tracker):
    """One part of a run (an arm of a comparison): its own `metrics.jsonl` and `summary.json` in
    `run_dir`, and the run's wandb run (if any) with every key prefixed `<prefix>/` and steps shifted
    by `step_offset`, so that the parts follow one another on one step axis."""

    def __init__(self, parent: Tracker, run_dir: Path, prefix: str, step_offset: int = 0) -> None:
        super().__init__(run_dir, wandb_run=None, enabled=parent.enabled)
        self.parent, self.prefix, self.step_offset = parent, prefix, int(step_offset)

    def _prefixed(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        return {f"{self.prefix}/{k}": v for k, v in _clean(metrics).items()}

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        super().log(metrics, step)
        if self.enabled and self.parent._wandb is not None:
            self.parent._wandb.log(self._prefixed(metrics), step=self.step_offset + int(step))

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        super().log_summary(metrics)
        if self.enabled and self.parent._wandb is not None:
            self.parent._wandb.summary.update(self._prefixed(metrics))

    def update_config(self, values: Mapping[str, Any]) -> None:
        if self.enabled and self.parent._wandb is not None:
            self.parent._wandb.config.update(self._prefixed(values), allow_val_change=True)


def _new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _wandb_mode(mode: WandbMode) -> str:
    if mode != WandbMode.auto:
        return mode.value
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def make_tracker(cfg: DictConfig, run_dir: Path, resolved: dict[str, Any] | None = None) -> Tracker:
    """The run's tracker; `resolved` is the config to record (default: all of `cfg`, resolved)."""
    backend = cfg.logger.backend
    if LoggerBackend(backend.value if hasattr(backend, "value") else backend) != LoggerBackend.wandb:
        return Tracker(run_dir)
    import wandb

    mode = _wandb_mode(
        WandbMode(cfg.logger.mode.value if hasattr(cfg.logger.mode, "value") else cfg.logger.mode)
    )
    if resolved is None:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    # One wandb run per run directory: a resumed (or requeued) run continues the same one.
    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else _new_run_id()
    id_file.write_text(run_id + "\n")
    run = wandb.init(
        id=run_id,
        resume="allow",
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        tags=list(cfg.logger.tags) + list(cfg.tags),
        name=cfg.experiment_name or run_dir.name,
        dir=str(run_dir),
        mode=mode,
        config=resolved,
        settings=wandb.Settings(console="off"),  # system stats (CPU, memory, GPU) on
    )
    log.info("wandb run %s (%s mode) in %s", run.id, mode, run_dir / "wandb")
    return Tracker(run_dir, wandb_run=run)
