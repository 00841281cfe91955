"""TL;DR prompts (`openai/summarize_from_feedback`, config `comparisons`) for the online setting.

As the authors' script: the text is the first of `info.<text_fields>` that is a non-empty string
(the post, or for the CNN/Daily Mail rows of the validation split the article), stripped, with
`prompt_suffix` ("\\nTL;DR:\\n") appended; kept when the prompt with its suffix is shorter than
`max_prompt_chars`, once per normalised text; validation prompts that also occur in train are
dropped. Every record carries the summarisation system prompt. The train split is processed first
whatever the order in `splits`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prepare_stats import PrepareStats
from sdpo_exp.data.raw import source_rows
from sdpo_exp.data.sources.prompts import dedup_key, prompt_record

TRAIN_SPLIT = "train"


def source_text(row: dict[str, Any], fields: list[str]) -> str | None:
    """The first of `fields` in the row's `info` that is a non-empty string (None: no such field)."""
    info = row.get("info")
    if not isinstance(info, dict):
        return None
    for name in fields:
        value = info.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def build_prompt(text: str, cfg: Any) -> str:
    return (text.strip() if cfg.strip else text) + cfg.prompt_suffix


def drop_reason(text: str | None, cfg: Any, seen: set[str], train_seen: set[str] | None) -> str | None:
    if text is None:
        return "no_text"
    if not text.strip():
        return "empty_prompt"
    prompt = build_prompt(text, cfg)
    if len(prompt) >= cfg.max_prompt_chars:
        return "prompt_too_long"
    key = dedup_key(prompt, cfg.dedup)
    if key in seen:
        return "duplicate"
    if train_seen is not None and key in train_seen:
        return "seen_in_train"
    return None


def prepare(cfg: Any, out_dir: Path) -> PrepareStats:
    stats = PrepareStats(cfg.name, cfg.hf_id, cfg.hf_config, cfg.revision, cfg.local_path)
    splits = sorted(cfg.splits, key=lambda s: s != TRAIN_SPLIT)
    fields = list(cfg.text_fields)
    train_seen: set[str] | None = None
    for split in splits:
        rows = source_rows(cfg, split, splits)
        seen: set[str] = set()
        path = out_dir / f"{split}.jsonl"
        with AtomicJsonlWriter(path) as out:
            for row in rows:
                stats.rows_read[split] += 1
                text = source_text(row, fields)
                reason = drop_reason(text, cfg, seen, None if split == TRAIN_SPLIT else train_seen)
                if reason:
                    stats.drop(split, reason)
                    continue
                prompt = build_prompt(text, cfg)
                key = dedup_key(prompt, cfg.dedup)
                seen.add(key)
                stats.counts[f"prompts_from_{_field_used(row, fields)}"] += 1
                out.write(prompt_record(cfg.name, split, prompt, cfg.system_prompt, key=key))
        stats.written[split] = out.count
        stats.outputs[split] = str(path)
        if split == TRAIN_SPLIT:
            train_seen = seen
    if TRAIN_SPLIT not in splits:
        stats.notes.append("no train split read: validation prompts were not checked against train")
    return stats


def _field_used(row: dict[str, Any], fields: list[str]) -> str:
    info = row["info"]
    return next(name for name in fields if isinstance(info.get(name), str) and info.get(name))
