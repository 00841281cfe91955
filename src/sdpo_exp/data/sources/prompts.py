"""Prompt records (the online setting's input): one JSON object per line,
`{"id", "prompt", "system"?, "source", "split"}`."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The key prompts are deduplicated by: lower case, runs of whitespace collapsed, ends stripped."""
    return _SPACE.sub(" ", text).strip().lower()


def prompt_id(source: str, text: str) -> str:
    """Stable across runs and row order: a hash of the normalised text."""
    return f"{source}-{hashlib.sha1(normalise(text).encode()).hexdigest()[:12]}"


def prompt_record(source: str, split: str, text: str, system: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": prompt_id(source, text), "prompt": text}
    if system:
        record["system"] = system
    record.update({"source": source, "split": split})
    return record
