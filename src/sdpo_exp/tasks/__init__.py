"""The task registry: `task.name` -> "module[:function]" whose function (default `run`) takes
`(cfg, ctx)` and returns the final metrics.

Modules are imported only when their task runs, so composing or printing a config stays fast.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sdpo_exp.errors import ConfigError, TaskNotAvailableError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from sdpo_exp.tasks.context import RunContext

TaskFn = Callable[["DictConfig", "RunContext"], dict[str, float]]

TASKS: dict[str, str] = {
    "prepare": "sdpo_exp.tasks.prepare",
    "offline": "sdpo_exp.tasks.offline",
    "signal": "sdpo_exp.tasks.signal",
    "online": "sdpo_exp.tasks.online_arms",
    "oracle": "sdpo_exp.tasks.oracle",
    "evaluate": "sdpo_exp.tasks.evaluate",
    "benchmark": "sdpo_exp.tasks.benchmark",
    "serve": "sdpo_exp.tasks.serve",
}


# The final metrics each task returns (fnmatch patterns): what `optimized_metric` may name. Checked
# before a run starts, so that a misspelt name fails at once instead of after training.
_SIGNAL = ("loss", "adv_mean", "adv_abs_mean", "adv_std", "adv_pos_frac", "adv_eos_mean", "student_logprob_mean",
           "teacher_logprob_mean", "kl_mean", "adv_clip_frac", "ref_kl_k1_mean", "num_tokens", "num_sequences",
           "num_eos_tokens", "num_interactions", "num_sequences_without_loss_tokens", "completions_truncated",
           "context_messages_dropped", "seconds")  # fmt: skip
METRICS: dict[str, tuple[str, ...]] = {
    "prepare": ("rows_read", "written/*", "dropped/*", "*"),  # plus the source's own counters
    "offline": ("train/loss", *(f"eval/{m}" for m in _SIGNAL), "data/*", "steps", "samples_seen", "tokens_seen", "train_seconds",
                "global_batch_size", "grad_accum_steps", "num_processes", "total_steps"),
    "signal": ("mean_abs_advantage_followup", "mean_abs_advantage_unrelated", "ratio", "num_cases", "num_tokens",
               "cases_followup_larger", "sampled_below_min_tokens", "skipped/*"),
    "online": ("final/*/vs_*/win_rate", "batches", "steps", "interactions", "interactions_offered", "no_followup",
               "train_seconds", "generate_seconds", "simulate_seconds", "update_seconds", "sync_seconds", "eval_seconds",
               "interactions_per_minute", "simulator/*", "judge/*", "oracle/*/win_rate", "*/final/*/vs_*/win_rate",
               "compare/*/*/*", "seconds"),
    "oracle": ("final/*/win_rate", "final/*/coverage", "judge/*"),
    "evaluate": ("win_rate/*",),
    "benchmark": ("benchmark/*", "diff/*"),
    "serve": ("requests", "rejected", "rejected/*", "interactions", "updates", "interactions_trained",
              "interactions_skipped", "pending_turns", "seconds", "train/*"),
}  # fmt: skip


# The config groups each task reads; the others stay composable but are left out of the run's
# `config.yaml`, of the tracker's config and of `--cfg job`.
_ALWAYS = ("task", "paths", "logger")
USED_GROUPS: dict[str, tuple[str, ...]] = {
    "prepare": (*_ALWAYS, "dataset"),
    "offline": (*_ALWAYS, "model", "dataset", "loss", "trainer", "hindsight"),
    "signal": (*_ALWAYS, "model", "hindsight", "generation"),
    "online": (*_ALWAYS, "model", "dataset", "user_profile", "simulator", "judge", "loss", "trainer", "generation",
               "hindsight"),
    "oracle": (*_ALWAYS, "model", "dataset", "user_profile", "judge", "generation"),
    "evaluate": (*_ALWAYS, "model", "dataset", "user_profile", "judge", "generation"),
    "benchmark": (*_ALWAYS, "model", "benchmark", "user_profile", "judge", "generation"),
    "serve": (*_ALWAYS, "model", "loss", "trainer", "generation", "hindsight"),
}  # fmt: skip
GROUPS = ("task", "model", "dataset", "user_profile", "simulator", "judge", "loss", "trainer", "generation",
          "logger", "hindsight", "paths", "benchmark")  # fmt: skip


def task_config(cfg: DictConfig) -> tuple[dict[str, Any], list[str]]:
    """(the resolved config without the groups the task does not read, the names of those groups)."""
    from omegaconf import OmegaConf

    used = USED_GROUPS.get(str(cfg.task.name), GROUPS)
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    unused = [g for g in GROUPS if g in plain and g not in used]
    return {k: v for k, v in plain.items() if k not in unused}, unused


def check_optimized_metric(task: str, metric: str | None) -> None:
    """Raise ConfigError unless `metric` is one the task returns."""
    if metric is None or task not in METRICS:
        return
    patterns = METRICS[task]
    if not any(fnmatch.fnmatchcase(metric, p) for p in patterns):
        close = difflib.get_close_matches(metric, [p for p in patterns if "*" not in p], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"optimized_metric='{metric}' is not a metric that task={task} returns{hint}; it returns: "
            + ", ".join(patterns)
        )


def _split(target: str) -> tuple[str, str]:
    module, _, function = target.partition(":")
    return module, function or "run"


def available_tasks() -> list[str]:
    return sorted(
        name for name, target in TASKS.items() if importlib.util.find_spec(_split(target)[0]) is not None
    )


def get_task(name: str) -> TaskFn:
    if name not in TASKS:
        raise TaskNotAvailableError(f"unknown task '{name}'; valid choices: {', '.join(sorted(TASKS))}")
    module_name, function = _split(TASKS[name])
    if importlib.util.find_spec(module_name) is None:
        raise TaskNotAvailableError(
            f"task '{name}' is planned but not implemented in this version; "
            f"available tasks: {', '.join(available_tasks())}"
        )
    return getattr(importlib.import_module(module_name), function)
