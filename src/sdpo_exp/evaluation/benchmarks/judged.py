"""The judged benchmarks (AlpacaEval 2.0, ArenaHard v2): their question files read into items, the
policy's answers judged against reference answers in both orders, and the judge that does it.

File formats read:
- AlpacaEval (`alpaca_eval.json` of the hub dataset `tatsu-lab/alpaca_eval`): a JSON list of objects
  with `instruction`, `output` (the reference answer), `generator` and `dataset`; the same objects
  one per line are accepted from a `.jsonl` file. An item's id is its `id` field when there is one,
  otherwise its position in the file; its category is its `dataset`.
- ArenaHard v2 (`data/arena-hard-v2.0/question.jsonl` of `lmarena/arena-hard-auto`): one object per
  line with `uid`, `category` (`hard_prompt` or `creative_writing`), `subcategory` and `prompt`; the
  benchmark's `categories` choose the rows kept. The file carries no reference answer.
The same rows are read from a parquet file (a table with those columns).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdpo_exp.errors import DataError
from sdpo_exp.evaluation.benchmarks.registry import Benchmark
from sdpo_exp.evaluation.pairs import judge_pairs
from sdpo_exp.evaluation.winrate import WinRate
from sdpo_exp.users.backends import ChatModel
from sdpo_exp.users.judge import Judge, RuleBasedJudge
from sdpo_exp.users.profiles import UserProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgedItem:
    id: str
    prompt: str
    category: str | None = None
    reference: str | None = None


@dataclass
class JudgedItems:
    items: list[JudgedItem]
    path: Path
    rows: int = 0  # records in the file (lines of a JSON-lines file, elements of a JSON list)
    skipped: Counter[str] = field(default_factory=Counter)
    available: int = 0  # valid items before `limit`


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(row: dict[str, Any], key: str, required: bool) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise _Skip("missing_prompt")
        return None
    if not isinstance(value, str):
        raise _Skip("wrong_type")
    return value


def _ident(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Skip("wrong_type")
    return str(value)


def _alpaca_item(row: dict[str, Any], index: int) -> JudgedItem:
    prompt = _text(row, "instruction", required=True)
    reference = _text(row, "output", required=False)
    category = _text(row, "dataset", required=False)
    ident = _ident(row["id"]) if row.get("id") is not None else str(index)
    return JudgedItem(ident, prompt, category, reference)


def _arena_item(row: dict[str, Any], index: int) -> JudgedItem:
    prompt = _text(row, "prompt", required=True)
    category = _text(row, "category", required=False)
    if row.get("uid") is None:
        raise _Skip("missing_id")
    return JudgedItem(_ident(row["uid"]), prompt, category)


_PARSERS: dict[str, Callable[[dict[str, Any], int], JudgedItem]] = {
    "alpaca_eval": _alpaca_item,
    "arena_hard": _arena_item,
    "arena_hard_creative": _arena_item,
}


def _records(path: Path, skipped: Counter[str]) -> Iterator[Any]:
    """The file's records in order; a JSON-lines line that cannot be decoded is counted in `skipped`
    and stands as None (so that positions stay those of the file)."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} is not a JSON file ({exc})") from None
        if not isinstance(data, list):
            raise DataError(f"{path} holds a JSON {type(data).__name__}, not a list of items")
        yield from data
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            yield from pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's errors carry the reason
            raise DataError(f"{path} is not a readable parquet file ({exc})") from None
        return
    if path.suffix != ".jsonl":
        raise DataError(
            f"{path}: a judged benchmark's questions are read from .json, .jsonl or .parquet files"
        )
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped["invalid_utf8"] += 1
                yield None
                continue
            if not line.strip():
                skipped["blank_line"] += 1
                yield None
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                skipped["invalid_json"] += 1
                yield None


def read_items(bench: Benchmark, path: Path, limit: int | None = None) -> JudgedItems:
    """The items of `bench`'s question file; bad records are skipped and counted by reason, and a file
    with no valid item is a DataError. `limit` keeps the first items (None: all)."""
    if bench.name not in _PARSERS:
        raise DataError(
            f"benchmark '{bench.name}' has no question-file reader (judged: {', '.join(_PARSERS)})"
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive or None, not {limit}")
    path = Path(path)
    parse = _PARSERS[bench.name]
    result = JudgedItems(items=[], path=path)
    seen: set[str] = set()
    for index, row in enumerate(_records(path, result.skipped)):
        result.rows += 1
        if row is None:
            continue
        try:
            if not isinstance(row, dict):
                raise _Skip("not_an_object")
            item = parse(row, index)
            if not item.prompt.strip():
                raise _Skip("empty_prompt")
            if bench.categories and item.category not in bench.categories:
                raise _Skip("other_category")
            if item.id in seen:
                raise _Skip("duplicate_id")
        except _Skip as skip:
            result.skipped[skip.reason] += 1
            continue
        seen.add(item.id)
        result.available += 1
        if limit is None or len(result.items) < limit:
            result.items.append(item)
    reasons = ", ".join(f"{r} {n}" for r, n in result.skipped.most_common())
    if not result.items:
        raise DataError(
            f"no valid {bench.title} item in {path} ({result.rows} records; {reasons or 'the file is empty'})"
        )
    log.info(
        "%s: %d of %d valid items from %s%s",
        bench.name,
        len(result.items),
        result.available,
        path,
        f" (skipped: {reasons})" if reasons else "",
    )
    return result


def judge_benchmark(
    judge: Judge,
    items: Sequence[JudgedItem],
    answers: Sequence[str],
    reference_answers: Sequence[str | None],
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], WinRate]:
    """Each answer judged against its item's reference answer in both orders; the per-item records
    (with the judge's raw replies) and the answers' win rate."""
    if not len(items) == len(answers) == len(reference_answers):
        raise ValueError("items, answers and reference answers must have one entry per item")
    for item, reference in zip(items, reference_answers, strict=True):
        if reference is None:  # an empty answer of a reference model is judged like any other
            raise ValueError(f"item '{item.id}' has no reference answer to judge against")
    prompts = [item.prompt for item in items]
    judged = judge_pairs(judge, prompts, answers, list(reference_answers))
    records = [
        {
            "id": item.id,
            "category": item.category,
            "prompt": item.prompt,
            "answer": answer,
            "reference": reference,
            "verdict_answer_as_a": as_a,
            "verdict_answer_as_b": as_b,
            "outcome": outcome.value,
        }
        for item, answer, reference, as_a, as_b, outcome in zip(
            items, answers, reference_answers, judged.policy_as_a, judged.policy_as_b, judged.outcomes,
            strict=True,
        )
    ]  # fmt: skip
    return records, judged.win_rate(bootstrap_samples, seed)


QUALITY_SYSTEM = """You judge the work of AI assistants. You are shown an instruction a user gave and two responses to it, Response A and Response B.
Decide which response serves the user better. Weigh, together:
- helpfulness: does it do what the user asked, fully;
- accuracy: are its facts, reasoning and code correct;
- relevance: does it stay on the request;
- depth: does it give the detail the request calls for, no more and no less;
- clarity: is it easy to follow.
A response is not better for being longer, and the order in which the two are shown must not sway you.
Reply with exactly one character and nothing else: A if Response A is better, B if Response B is better, C if they are equally good or you cannot tell."""

QUALITY_USER = """Instruction:
{prompt}

===== Response A =====
{a}
===== End of Response A =====

===== Response B =====
{b}
===== End of Response B =====

Which response is better? Reply with A, B or C only."""

QUALITY_PROFILE = UserProfile(
    name="quality",
    description="A user who wants the most helpful, accurate, relevant, thorough and clear answer.",
)


def quality_messages(prompt: str, a: str, b: str) -> list[dict[str, str]]:
    """The chat that asks a model which of two responses to `prompt` is better."""
    return [
        {"role": "system", "content": QUALITY_SYSTEM},
        {"role": "user", "content": QUALITY_USER.format(prompt=prompt, a=a, b=b)},
    ]


class QualityJudge:
    """A model judging the general quality of two responses (not a user profile's style)."""

    def __init__(self, chat: ChatModel) -> None:
        self.profile, self.chat = QUALITY_PROFILE, chat

    def compare(
        self, requests: Sequence[str], replies_a: Sequence[str], replies_b: Sequence[str]
    ) -> list[str | None]:
        chats = [quality_messages(q, a, b) for q, a, b in zip(requests, replies_a, replies_b, strict=True)]
        return self.chat.replies(chats)

    def metrics(self) -> dict[str, float]:
        return self.chat.metrics()


def _backend(judge_cfg: Any) -> str:
    return str(getattr(judge_cfg.backend, "value", judge_cfg.backend))


def make_benchmark_judge(judge_cfg: Any, profile: UserProfile, cache_dir: str, device: Any = None) -> Judge:
    """The rule-based judge playing `profile` (it can only judge style), or a model judging quality."""
    if _backend(judge_cfg) == "rule_based":
        return RuleBasedJudge(profile, bool(judge_cfg.get("common_rules", True)))
    from sdpo_exp.users.backends import make_chat_model

    return QualityJudge(make_chat_model(judge_cfg, cache_dir, device))


def judge_label(judge_cfg: Any, profile: UserProfile | None = None) -> str:
    """Who judged, for reports: "rule-based (profile answer_directly)", "<model> (anthropic)"."""
    backend = _backend(judge_cfg)
    if backend == "rule_based":
        return f"rule-based (profile {profile.name})" if profile is not None else "rule-based"
    model = judge_cfg.model
    name = model if isinstance(model, str) else model.name
    return f"{name} ({backend})"
