"""Raw sources that `task=prepare` knows: dataset name -> the function that prepares it.

Each function takes the `dataset` config node and an output directory and returns PrepareStats.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

PREPARERS: dict[str, str] = {
    "wildfeedback": "sdpo_exp.data.sources.conversational:prepare",
    "wildchat": "sdpo_exp.data.sources.conversational:prepare",
    "helpsteer2": "sdpo_exp.data.sources.helpsteer2:prepare",
    "tldr": "sdpo_exp.data.sources.tldr:prepare",
}


def get_preparer(name: str) -> Callable | None:
    target = PREPARERS.get(name)
    if target is None:
        return None
    module, _, function = target.partition(":")
    return getattr(import_module(module), function)
