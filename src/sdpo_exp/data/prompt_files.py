"""Read a prompt file (the online setting's input): every good line used, every bad one skipped and
counted by reason. A line is a JSON object with `prompt` (a non-empty string) and optionally `id` and
`system`; `task=prepare dataset=helpsteer2|tldr` writes such files."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdpo_exp.data.sources.prompts import prompt_id
from sdpo_exp.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str
    system: str | None = None

    def messages(self, system: str | None = None) -> list[dict[str, str]]:
        """The chat x: the prompt's own system message (or `system` when given), then the request."""
        text = system if system is not None else self.system
        head = [{"role": "system", "content": text}] if text else []
        return [*head, {"role": "user", "content": self.prompt}]


@dataclass
class PromptFile:
    path: Path
    prompts: list[Prompt]
    lines: int = 0
    skipped: Counter = field(default_factory=Counter)
    unused_valid: int = 0

    def summary(self, prefix: str) -> dict[str, int]:
        out = {f"{prefix}/prompts": len(self.prompts), f"{prefix}/lines": self.lines}
        if self.unused_valid:
            out[f"{prefix}/unused_beyond_max_prompts"] = self.unused_valid
        out.update({f"{prefix}/skipped/{reason}": n for reason, n in sorted(self.skipped.items())})
        return out


def _parse(obj: object) -> Prompt:
    if not isinstance(obj, dict):
        raise ValueError("not_an_object")
    text = obj.get("prompt")
    if not isinstance(text, str):
        raise ValueError("missing_prompt" if text is None else "wrong_type")
    if not text.strip():
        raise ValueError("empty_prompt")
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise ValueError("wrong_type")
    pid = obj.get("id")
    return Prompt(str(pid) if pid is not None else prompt_id("prompt", text), text, system or None)


def read_prompts(path: str | Path, max_prompts: int | None = None) -> PromptFile:
    """Parse a JSON-lines prompt file; a file with no valid prompt is a DataError naming it. Prompts
    whose id repeats an earlier one are skipped (`duplicate_id`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"prompt file not found: {path.resolve()}" + (" (it is a directory)" if path.is_dir() else "")
        )
    result = PromptFile(path=path, prompts=[])
    seen: set[str] = set()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            result.lines = number
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    raise ValueError("blank_line")
                prompt = _parse(json.loads(line))
                if prompt.id in seen:
                    raise ValueError("duplicate_id")
            except UnicodeDecodeError:
                reason = "invalid_utf8"
            except json.JSONDecodeError:
                reason = "invalid_json"
            except ValueError as exc:
                reason = str(exc)
            else:
                seen.add(prompt.id)
                if max_prompts is not None and len(result.prompts) >= max_prompts:
                    result.unused_valid += 1
                else:
                    result.prompts.append(prompt)
                continue
            result.skipped[reason] += 1
            if result.skipped[reason] <= 3:
                log.warning("%s:%d skipped (%s)", path, number, reason)
    if not result.prompts:
        reasons = ", ".join(f"{r} {n}" for r, n in result.skipped.most_common()) or "the file is empty"
        raise DataError(f"no valid prompt in {path} ({result.lines} lines; {reasons})")
    log.info("Read %d prompts from %s (%d lines, %d skipped)", len(result.prompts), path, result.lines,
             sum(result.skipped.values()))  # fmt: skip
    return result


def read_prompt_sets(
    dataset: Any, num_eval: int | None, train: bool = True
) -> tuple[list[Prompt], list[Prompt]]:
    """(training prompts, the first `num_eval` held-out prompts) of a prompt-files dataset config;
    with `train=False` only the held-out ones are read (the training list is empty)."""
    name = dataset.get("name")
    for key in ("train_path", "eval_path") if train else ("eval_path",):
        if not dataset.get(key):
            raise ConfigError(
                f"the online tasks need prompt files: dataset.{key} is not set for dataset '{name}' "
                "(dataset=online_demo, dataset=prompts dataset.train_path=FILE dataset.eval_path=FILE, or a "
                "prepared source: task=prepare dataset=helpsteer2|tldr, then dataset=helpsteer2|tldr)"
            )
    train_prompts = (
        read_prompts(dataset.train_path, dataset.get("max_train_prompts")).prompts if train else []
    )
    held = read_prompts(dataset.eval_path, dataset.get("max_eval_prompts")).prompts
    if num_eval is not None:
        if num_eval < 1:
            raise ConfigError("task.eval.num_eval_prompts must be >= 1")
        if num_eval > len(held):
            log.warning(
                "task.eval.num_eval_prompts=%d but %s has %d prompts: using all",
                num_eval,
                dataset.eval_path,
                len(held),
            )
        held = held[:num_eval]
    return train_prompts, held
