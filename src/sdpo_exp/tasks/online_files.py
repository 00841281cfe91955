"""What an online run writes besides metrics: `interactions.jsonl` (every interaction trained on, in
the interaction schema plus batch and profile, so that `task=offline` can replay it), `winrate.jsonl`
(one line per evaluation, profile and baseline), `winrate.png` and `report.md`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.evaluation.plots import plot_winrate
from sdpo_exp.evaluation.report import write_report
from sdpo_exp.training.resume import truncate_metrics
from sdpo_exp.users.schedule import ProfileSchedule

log = logging.getLogger(__name__)


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class OnlineFiles:
    def __init__(self, run_dir: Path, main: bool) -> None:
        self.run_dir, self.main = run_dir, main
        self.interactions_path = run_dir / "interactions.jsonl"
        self.winrate_path = run_dir / "winrate.jsonl"
        self.oracle_path = run_dir / "oracle.jsonl"  # the in-context oracle's rows (task.oracle)

    def truncate(self, batches: int, steps: int, fresh: bool) -> None:
        """Keep what the checkpoint's state covers (nothing on a fresh start)."""
        removed = truncate_metrics(self.interactions_path, -1 if fresh else batches - 1, key="batch")
        removed += truncate_metrics(self.winrate_path, -1 if fresh else batches, key="batch")
        removed += truncate_metrics(self.run_dir / "metrics.jsonl", -1 if fresh else steps)
        if fresh:
            self.oracle_path.unlink(missing_ok=True)
        if removed:
            log.warning("Removed %d rows written by an earlier attempt after this point", removed)

    def add_interactions(self, per_process: list[list[dict[str, Any]]]) -> None:
        if self.main:
            _append(self.interactions_path, [row for rows in per_process for row in rows])

    def add_winrates(self, rows: list[dict[str, Any]]) -> None:
        if self.main:
            _append(self.winrate_path, rows)

    def winrates(self) -> list[dict[str, Any]]:
        return read_jsonl(self.winrate_path)

    def set_oracle(self, rows: list[dict[str, Any]]) -> None:
        if self.main:
            with AtomicJsonlWriter(self.oracle_path) as out:
                for row in rows:
                    out.write(row)

    def oracle(self) -> list[dict[str, Any]]:
        return read_jsonl(self.oracle_path)

    def write_outputs(
        self,
        cfg: DictConfig,
        schedule: ProfileSchedule,
        offered: int,
        global_batch: int,
        examples: int | None = None,
    ) -> None:
        rows = self.winrates()
        title = (
            f"{cfg.model.name}, {schedule.describe()}, simulator {cfg.simulator.name}, judge {cfg.judge.name}"
        )
        oracle = self.oracle()
        plot_winrate(rows, schedule.switch_points, self.run_dir / "winrate.png", title, oracle)
        trained = [r for r in read_jsonl(self.interactions_path) if "skipped" not in r]
        k = int(examples if examples is not None else cfg.task.get("report_examples", 3))
        first_batch = min((r["batch"] for r in trained), default=0)
        last_batch = max((r["batch"] for r in trained), default=0)

        def pick(batch: int) -> list[dict[str, Any]]:
            chosen = [r for r in trained if r["batch"] == batch][:k]
            return [{"profile": r["profile"], "prompt": r["context"][-1]["content"], "reply": r["completion"],
                     "followup": r["followup"]} for r in chosen]  # fmt: skip

        settings = {
            "task": cfg.task.name,
            "model": cfg.model.name,
            "profile schedule": schedule.describe(),
            "simulator / judge": f"{cfg.simulator.name} ({_backend(cfg.simulator)}) / {cfg.judge.name} ({_backend(cfg.judge)})",
            "interactions offered": offered,
            "interactions trained": len(trained),
            "prompts per batch (global batch)": global_batch,
            "optimiser steps per batch": OmegaConf.select(cfg, "task.updates_per_batch"),
            "loss / teacher": f"{cfg.loss.name} / {_backend(cfg.loss.teacher, 'kind')}",
            "optimiser": f"{_backend(cfg.trainer, 'optimizer')}, lr {cfg.trainer.lr}, {_backend(cfg.trainer, 'lr_scheduler')}",
            "sampling": f"temperature {cfg.generation.temperature}, top_p {cfg.generation.top_p}, top_k {cfg.generation.top_k}, max {cfg.generation.max_new_tokens} tokens",
            "held-out prompts": OmegaConf.select(cfg, "task.eval.num_eval_prompts"),
            "seed": cfg.seed,
        }
        intro = (
            "Win rates are the judge's verdicts on the policy's greedy replies to the held-out prompts against "
            "the baseline's, each pair judged twice with the positions swapped (ties and disagreements excluded "
            "from the rate; SE = sqrt(p(1-p)/decided pairs); coverage = share of decided pairs)."
        )
        write_report(self.run_dir / "report.md", "Online SDPO run", intro, settings, rows,
                     pick(first_batch), pick(last_batch) if last_batch != first_batch else [], "winrate.png",
                     oracle)  # fmt: skip


def _backend(node: Any, key: str = "backend") -> str:
    value = node[key] if key in node else "?"
    return str(getattr(value, "value", value))
