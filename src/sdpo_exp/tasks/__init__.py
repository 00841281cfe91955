"""The task registry: `task.name` -> "module[:function]" whose function (default `run`) takes
`(cfg, ctx)` and returns the final metrics.

Modules are imported only when their task runs, so composing or printing a config stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from sdpo_exp.errors import TaskNotAvailableError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from sdpo_exp.tasks.context import RunContext

TaskFn = Callable[["DictConfig", "RunContext"], dict[str, float]]

TASKS: dict[str, str] = {
    "prepare": "sdpo_exp.tasks.prepare",
    "offline": "sdpo_exp.tasks.offline",
    "signal": "sdpo_exp.tasks.signal",
    "online": "sdpo_exp.tasks.online",
    "oracle": "sdpo_exp.tasks.oracle",
    "evaluate": "sdpo_exp.tasks.evaluate",
}


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
