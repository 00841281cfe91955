"""The `signals.json` document: one record per case, the run's metadata, and the summary.

Layout::

    {"meta": {...}, "cases": [CaseSignal, ...], "summary": {...}}

Every per-token list of a case has one entry per completion token id; advantages are
``teacher_logprobs_<which> - student_logprobs``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdpo_exp.errors import DataError

FOLLOWUPS = ("followup", "unrelated")
PER_TOKEN = (
    "completion_token_ids",
    "tokens",
    "student_logprobs",
    "teacher_logprobs_followup",
    "teacher_logprobs_unrelated",
    "advantages_followup",
    "advantages_unrelated",
)


@dataclass
class CaseSignal:
    id: str
    kind: str
    prompt: list[dict[str, str]]
    followup: str
    unrelated: str
    completion_source: str  # "fixed" or "sampled"
    completion_ended: bool  # the completion ends with the end-of-turn token
    completion_text: str
    completion_token_ids: list[int]
    tokens: list[str]
    student_context: str
    teacher_context_followup: str
    teacher_context_unrelated: str
    student_logprobs: list[float]
    teacher_logprobs_followup: list[float]
    teacher_logprobs_unrelated: list[float]
    advantages_followup: list[float]
    advantages_unrelated: list[float]
    sampling_attempts: int = 0  # 0 for a fixed completion
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {name: len(getattr(self, name)) for name in PER_TOKEN}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"case {self.id}: per-token lists differ in length: {lengths}")

    def mean_abs(self, which: str) -> float:
        values = getattr(self, f"advantages_{which}")
        return sum(abs(v) for v in values) / len(values) if values else 0.0

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["mean_abs_advantage_followup"] = self.mean_abs("followup")
        record["mean_abs_advantage_unrelated"] = self.mean_abs("unrelated")
        if not record["extra"]:
            del record["extra"]
        return record


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def summarize(cases: list[CaseSignal]) -> dict[str, Any]:
    """Token-weighted mean |A| under each follow-up over all cases, their ratio (followup/unrelated;
    None when the unrelated mean is 0), and the same per case kind."""

    def pooled(subset: list[CaseSignal]) -> dict[str, Any]:
        n = sum(len(c.completion_token_ids) for c in subset)
        means = {}
        for which in FOLLOWUPS:
            total = sum(abs(v) for c in subset for v in getattr(c, f"advantages_{which}"))
            means[which] = total / n if n else 0.0
        larger = sum(c.mean_abs("followup") > c.mean_abs("unrelated") for c in subset)
        return {
            "mean_abs_advantage_followup": means["followup"],
            "mean_abs_advantage_unrelated": means["unrelated"],
            "ratio": _ratio(means["followup"], means["unrelated"]),
            "num_cases": len(subset),
            "num_tokens": n,
            "cases_followup_larger": larger,
        }

    summary = pooled(cases)
    summary["by_kind"] = {
        kind: pooled([c for c in cases if c.kind == kind]) for kind in sorted({c.kind for c in cases})
    }
    return summary


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as strings rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def signals_document(meta: dict[str, Any], cases: list[CaseSignal]) -> dict[str, Any]:
    return {"meta": meta, "cases": [c.to_dict() for c in cases], "summary": summarize(cases)}


def write_signals(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(document), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_signals(path: Path) -> dict[str, Any]:
    """A signals.json document, checked for the keys the plots and the page use."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read signals file {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise DataError(f"signals file {path} has no 'cases' list")
    for index, case in enumerate(document["cases"]):
        missing = [
            k for k in ("id", "tokens", "advantages_followup", "advantages_unrelated") if k not in case
        ]
        if missing:
            raise DataError(f"signals file {path}: case {index} lacks {missing}")
    return document
