"""Win rates of a policy over a run: its greedy replies to the held-out prompts, judged for each
profile of the schedule against the base model's replies (computed once, cached in the run
directory) and, once a later profile has started, against the policy's replies at that start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prompt_files import Prompt
from sdpo_exp.errors import SdpoError
from sdpo_exp.evaluation.compare import compare_replies
from sdpo_exp.evaluation.replies import load_replies, policy_replies, save_replies
from sdpo_exp.evaluation.report import pct
from sdpo_exp.users.schedule import ProfileSchedule

log = logging.getLogger(__name__)


class WinRateTracker:
    def __init__(
        self,
        cfg: Any,
        held: list[Prompt],
        schedule: ProfileSchedule,
        judges: dict[str, Any],
        policy: Any,
        run_dir: Path,
        system: str | None = None,
        base_label: str = "base",
    ) -> None:
        self.held, self.schedule, self.judges, self.policy = held, schedule, judges, policy
        self.max_new_tokens = int(cfg.task.eval.max_new_tokens or cfg.generation.max_new_tokens)
        self.batch_size = cfg.task.eval.get("batch_size")  # None: the generator's own
        self.bootstrap = int(cfg.task.eval.bootstrap_samples)
        self.seed = int(cfg.seed)
        self.system = system  # a system prompt for the policy's replies (the in-context oracle)
        self.base_label = base_label  # how winrate.jsonl names the base model's replies
        self.dir = run_dir / "eval_replies"
        self.base: list[str] | None = None

    @property
    def base_path(self) -> Path:
        return self.dir / "base.jsonl"

    def _reference_path(self, profile: str) -> Path:
        return self.dir / f"start_{profile}.jsonl"

    def prepare_baseline(self, fresh: bool, accelerator: Any = None, base_policy: Any = None) -> list[str]:
        """The base model's greedy replies: from the cache, or computed now (only possible before
        training has changed the weights, or with a separate `base_policy`)."""
        if _main(accelerator):
            self.base = load_replies(self.base_path, self.held)
            if self.base is None:
                if not fresh and base_policy is None:
                    raise SdpoError(
                        f"{self.base_path} (the base model's replies) is missing or was made for other prompts, "
                        "and the weights have been trained since: start a new run directory (resume=never)"
                    )
                log.info("Base model: greedy replies to %d held-out prompts", len(self.held))
                self.base = policy_replies(
                    base_policy or self.policy, self.held, self.max_new_tokens, batch_size=self.batch_size
                )
                self.dir.mkdir(parents=True, exist_ok=True)
                save_replies(self.base_path, self.held, self.base)
        _barrier(accelerator)
        return self.base or []

    def evaluate(
        self, interactions: int, batches: int, steps: int, accelerator: Any = None, untrained: bool = False
    ) -> list[dict[str, Any]]:
        """Rows of winrate.jsonl for this point (on the main process; [] elsewhere). `untrained`: the
        policy still has the base model's weights, so its greedy replies are the base model's (reused,
        not generated again). Each pair's outcome is kept in `eval_replies/outcomes_at_<N>.jsonl`."""
        rows: list[dict[str, Any]] = []
        if _main(accelerator):
            if untrained and self.system is None and self.base is not None:
                replies = list(self.base)
            else:
                replies = policy_replies(
                    self.policy, self.held, self.max_new_tokens, self.system, self.batch_size
                )
            self.dir.mkdir(parents=True, exist_ok=True)
            save_replies(self.dir / f"at_{interactions}.jsonl", self.held, replies)
            for start, profile in self.schedule.segments:
                if start > 0 and start == interactions:
                    save_replies(self._reference_path(profile.name), self.held, replies)
            baselines = {}
            for profile in self.schedule.profiles:
                baselines[profile.name] = {self.base_label: self.base}
                start = self.schedule.start_of(profile)
                if start > 0 and interactions >= start:
                    reference = load_replies(self._reference_path(profile.name), self.held)
                    if reference is not None:
                        baselines[profile.name][f"start@{start}"] = reference
            active = self.schedule.profile_at(max(interactions - 1, 0)).name
            found = compare_replies(self.judges, self.held, replies, baselines, self.bootstrap, self.seed)
            self._save_outcomes(self.dir / f"outcomes_at_{interactions}.jsonl", found)
            for row in found:
                rows.append(
                    {
                        "interactions": interactions,
                        "batch": batches,
                        "step": steps,
                        "active_profile": active,
                        **row,
                    }
                )
                _log_row(f"{interactions} interactions", row)
        _barrier(accelerator)
        return rows

    def _save_outcomes(self, path: Path, found: list[dict[str, Any]]) -> None:
        """One line per prompt, profile and baseline: that pair's outcome ("win", "loss" or "tie")."""
        with AtomicJsonlWriter(path) as out:
            for row in found:
                for prompt, outcome in zip(self.held, row.pop("outcomes"), strict=True):
                    out.write({"id": prompt.id, "profile": row["profile"], "baseline": row["baseline"],
                               "outcome": outcome})  # fmt: skip

    def evaluate_oracle(self, system_prompt: str, outcomes_path: Path) -> list[dict[str, Any]]:
        """The in-context oracle: the policy (at the start of a run: the base model) told each profile in
        its system prompt (`system_prompt` with `{profile}`), judged for that profile against the base
        model's replies; rows as `evaluate`'s, `interactions` 0. Main process only."""
        found: list[dict[str, Any]] = []
        for profile in self.schedule.profiles:
            system = system_prompt.replace("{profile}", profile.description)
            replies = policy_replies(self.policy, self.held, self.max_new_tokens, system, self.batch_size)
            save_replies(self.dir / f"oracle_{profile.name}.jsonl", self.held, replies)
            judges = {profile.name: self.judges[profile.name]}
            baselines = {profile.name: {self.base_label: self.base}}
            found += compare_replies(judges, self.held, replies, baselines, self.bootstrap, self.seed)
        self._save_outcomes(outcomes_path, found)
        for row in found:
            _log_row("In-context oracle", row)
        return [
            {"interactions": 0, "batch": 0, "step": 0, "active_profile": row["profile"], **row}
            for row in found
        ]


def _log_row(when: str, row: dict[str, Any]) -> None:
    rate = pct(row["win_rate"])
    log.info("%s: win rate %s for %s vs %s (%d won, %d lost, %d tied)", when, rate, row["profile"], row["baseline"],
             row["wins"], row["losses"], row["ties"])  # fmt: skip


def _main(accelerator: Any) -> bool:
    return accelerator is None or accelerator.is_main_process


def _barrier(accelerator: Any) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()
