"""`task=prepare`: turn a raw source (`dataset=wildfeedback|wildchat|helpsteer2|tldr`) into
interaction or prompt files plus `prepare_stats.json` (rows read, kept, written, drops by reason)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from sdpo_exp.data.jsonl import write_json
from sdpo_exp.data.sources import PREPARERS, get_preparer
from sdpo_exp.errors import ConfigError
from sdpo_exp.tasks.context import RunContext

log = logging.getLogger(__name__)

STATS_FILE = "prepare_stats.json"


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    name = cfg.dataset.name
    preparer = get_preparer(name)
    if preparer is None:
        raise ConfigError(
            f"task=prepare needs a raw source; dataset '{name}' has nothing to prepare. "
            f"Choose dataset={'|'.join(sorted(PREPARERS))}"
        )
    out_dir = Path(cfg.dataset.output_dir)
    stats_path = out_dir / STATS_FILE
    if stats_path.exists() and not cfg.task.overwrite:
        raise ConfigError(
            f"{out_dir} already holds prepared {name} data ({STATS_FILE}); set task.overwrite=true to "
            f"replace it, or dataset.output_dir=... (or paths.data_dir=...) to write elsewhere"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = preparer(cfg.dataset, out_dir)
    report = stats.to_json()
    write_json(stats_path, report)
    write_json(ctx.run_dir / STATS_FILE, report)
    _log_report(report, stats_path)
    metrics = stats.metrics()
    ctx.log(metrics, step=0)
    return metrics


def _log_report(report: dict, stats_path: Path) -> None:
    written = ", ".join(f"{k} {v}" for k, v in report["written"].items())
    log.info("%s: %d raw rows read; written %s", report["source"], report["rows_read"], written)
    if report["dropped"]:
        log.info("Dropped: %s", json.dumps(report["dropped"]))
    for name, path in report["outputs"].items():
        log.info("  %s -> %s", name, path)
    log.info("Statistics in %s", stats_path)
