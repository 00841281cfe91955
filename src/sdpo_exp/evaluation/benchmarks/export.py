"""The policy's answers to a judged benchmark in the files the official tools read, so that a run can
also be scored by them (their judges, their reference answers, their length or style control)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter, write_json
from sdpo_exp.evaluation.benchmarks.judged import JudgedItem


def _check(items: Sequence[JudgedItem], answers: Sequence[str]) -> None:
    if len(items) != len(answers):
        raise ValueError(f"{len(items)} items but {len(answers)} answers")


def write_alpaca_eval(
    path: Path, items: Sequence[JudgedItem], answers: Sequence[str], generator: str
) -> None:
    """AlpacaEval's model-outputs file, read by `alpaca_eval --model_outputs PATH` (tatsu-lab/alpaca_eval):
    a JSON list of objects with `instruction`, `output`, `generator`, and `dataset` where the item's
    category (the question file's `dataset`) is known. AlpacaEval pairs an output with its reference by
    `instruction`, so the instructions are written exactly as read."""
    _check(items, answers)
    rows = []
    for item, answer in zip(items, answers, strict=True):
        row = {"instruction": item.prompt, "output": answer, "generator": generator}
        if item.category is not None:
            row["dataset"] = item.category
        rows.append(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, rows)


_CODE_BLOCK = re.compile(r"```[^`]*```")
_HEADER_LEVEL = re.compile(r"^(#{1,6})\s", re.MULTILINE)
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def markdown_counts(answer: str) -> dict[str, dict[str, int]]:
    """ArenaHard's style features of an answer, outside its code blocks: headers by level, ordered and
    unordered list lines, bold spans."""
    text = _CODE_BLOCK.sub("", answer)
    levels = [len(m) for m in _HEADER_LEVEL.findall(text)]
    return {
        "header_count": {f"h{n}": levels.count(n) for n in range(1, 7)},
        "list_count": {"ordered": len(_ORDERED.findall(text)), "unordered": len(_UNORDERED.findall(text))},
        "bold_count": {"**": len(_BOLD_STARS.findall(text)), "__": len(_BOLD_UNDERSCORES.findall(text))},
    }


def write_arena_hard(
    path: Path,
    items: Sequence[JudgedItem],
    answers: Sequence[str],
    model: str,
    count_tokens: Callable[[str], int] | None = None,
) -> None:
    """An ArenaHard v2 model-answer file, as lmarena/arena-hard-auto's `gen_answer.py` writes it to
    `data/arena-hard-v2.0/model_answer/<model>.jsonl`, where `gen_judgment.py` (the judgments) and
    `show_result.py` (the scores, `--control-features` for style control) read it. One JSON object per
    line: `uid`, `ans_id`, `model`, `messages` (the user's prompt, then the assistant's content as
    `{"answer": ...}`), `tstamp` and `metadata` (`token_len` and the markdown counts).

    `token_len` is `count_tokens(answer)` (default: whitespace-separated words); arena-hard-auto counts
    tiktoken's gpt-4o tokens, and its `utils/add_markdown_info.py --dir D --output-dir D` recounts them
    before a style-controlled score."""
    _check(items, answers)
    count = count_tokens or (lambda text: len(text.split()))
    with AtomicJsonlWriter(path) as out:
        for item, answer in zip(items, answers, strict=True):
            row: dict[str, Any] = {
                "uid": item.id,
                "ans_id": uuid.uuid4().hex,
                "model": model,
                "messages": [
                    {"role": "user", "content": item.prompt},
                    {"role": "assistant", "content": {"answer": answer}},
                ],
                "tstamp": time.time(),
                "metadata": {"token_len": int(count(answer)), **markdown_counts(answer)},
            }
            out.write(row)
