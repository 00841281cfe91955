"""Resuming: which checkpoint to continue from, whether the config still matches it, and the metrics
file cut back to the checkpoint's step (rows logged after it would otherwise appear twice)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdpo_exp.errors import ConfigError
from sdpo_exp.training.checkpoint import COMPLETE, STATE_FILE, latest_checkpoint

log = logging.getLogger(__name__)

# Settings of the learner that decide the weights a run ends with: a resumed run must have the same
# ones. Each task adds the keys of its own data (`fingerprint(..., keys)`).
LEARNER_KEYS = (
    "seed",
    "model",
    "loss",
    "hindsight",
    "trainer.optimizer",
    "trainer.lr",
    "trainer.weight_decay",
    "trainer.adam_beta1",
    "trainer.adam_beta2",
    "trainer.adam_eps",
    "trainer.lr_scheduler",
    "trainer.warmup_ratio",
    "trainer.max_grad_norm",
    "trainer.max_prompt_tokens",
    "trainer.max_completion_tokens",
    "trainer.precision",
)
# Allowed to change (with a warning): they move the end of the run and the schedule's horizon.
LENGTH_KEYS = ("trainer.epochs", "trainer.max_steps")


def fingerprint(cfg: DictConfig, global_batch: int, keys: tuple[str, ...] = LEARNER_KEYS) -> dict[str, Any]:
    """The values of `keys` (and of the run-length keys) in `cfg`, plus the global batch size."""
    out: dict[str, Any] = {"global_batch": global_batch}
    for key in (*keys, *LENGTH_KEYS):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        elif hasattr(value, "value"):
            value = value.value
        out[key] = value
    return json.loads(json.dumps(out, default=str))


# Options that choose how a step is computed, not what it computes: a run may resume with others.
PATH_ONLY = {"loss": ("shared_prefix", "chunk_size")}


def _comparable(fingerprint_: dict[str, Any]) -> dict[str, Any]:
    out = dict(fingerprint_)
    for key, options in PATH_ONLY.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in options}
    return out


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose settings differ from the current ones (but for the run length and
    the options of `PATH_ONLY`)."""
    saved, current = _comparable(saved), _comparable(current)
    strict = [k for k in sorted(set(saved) | set(current)) if k not in LENGTH_KEYS]
    changed = [k for k in strict if saved.get(k) != current.get(k)]
    if changed:
        detail = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
        raise ConfigError(
            f"cannot resume from {path}: settings changed since it was written ({detail}). Use the "
            f"same config, or start a new run directory (or resume=never)"
        )
    for key in LENGTH_KEYS:
        if saved.get(key) != current.get(key):
            log.warning(
                "%s changed since %s was written (%r -> %r): the run continues to the new length and the "
                "learning-rate schedule follows the new horizon",
                key,
                path.name,
                saved.get(key),
                current.get(key),
            )


def checkpoint_to_resume(resume: str, run_dir: Path) -> Path | None:
    """`auto`: the newest complete checkpoint in the run directory (or None); `never`: None; anything
    else: the path of a checkpoint directory."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if not (path / COMPLETE).is_file() or not (path / STATE_FILE).is_file():
        raise ConfigError(f"resume={resume}: not a complete checkpoint directory (auto, never, or a path)")
    return path


def truncate_metrics(metrics_file: Path, step: int, key: str = "step") -> int:
    """Drop rows whose `key` is above `step` (in place: a tracker may hold the file open in append
    mode). Rows without the key are kept; a line cut by a kill is dropped. Returns the rows removed."""
    if not metrics_file.is_file():
        return 0
    with open(metrics_file, "r+", encoding="utf-8") as fh:
        lines = fh.readlines()
        kept = []
        for line in lines:
            try:
                row_step = json.loads(line).get(key)
            except (json.JSONDecodeError, AttributeError):
                continue
            if row_step is None or row_step <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        fh.seek(0)
        fh.writelines(kept)
        fh.truncate()
    return len(lines) - len(kept)
