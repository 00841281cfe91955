"""Prompt records (the online setting's input): one JSON object per line,
`{"id", "prompt", "system"?, "source", "split"}`."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, runs of whitespace collapsed, ends stripped."""
    return _SPACE.sub(" ", text).strip().lower()


def dedup_key(text: str, mode: Any) -> str:
    """The key prompts are deduplicated by: the text itself (`exact`) or its normalised form."""
    return normalise(text) if getattr(mode, "value", mode) == "normalised" else text


def prompt_id(source: str, text: str, key: str | None = None) -> str:
    """Stable across runs and row order: a hash of `key` (the dedup key, so that prompts kept as
    different get different ids), by default of the normalised text."""
    digest = hashlib.sha1((normalise(text) if key is None else key).encode()).hexdigest()
    return f"{source}-{digest[:12]}"


def prompt_record(
    source: str, split: str, text: str, system: str | None = None, key: str | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {"id": prompt_id(source, text, key), "prompt": text}
    if system:
        record["system"] = system
    record.update({"source": source, "split": split})
    return record
