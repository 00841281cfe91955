"""TL;DR prompts (`openai/summarize_from_feedback`, config `comparisons`) for the online setting.

Prompt = the Reddit post text (`info.post`); kept when shorter than 1,024 characters, once per
normalised text; validation posts that also occur in train are dropped. Every record carries the
summarisation system prompt. The train split is processed first whatever the order in `splits`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prepare_stats import PrepareStats
from sdpo_exp.data.raw import source_rows
from sdpo_exp.data.sources.prompts import normalise, prompt_record

TRAIN_SPLIT = "train"


def post_text(row: dict[str, Any]) -> str | None:
    info = row.get("info")
    if not isinstance(info, dict):
        return None
    post = info.get("post")
    return post if isinstance(post, str) else None


def drop_reason(post: str | None, cfg: Any, seen: set[str], train_seen: set[str] | None) -> str | None:
    if post is None:
        return "no_post"  # e.g. the CNN/DM articles of the validation split
    if not post.strip():
        return "empty_prompt"
    if len(post) >= cfg.max_prompt_chars:
        return "prompt_too_long"
    key = normalise(post)
    if key in seen:
        return "duplicate"
    if train_seen is not None and key in train_seen:
        return "seen_in_train"
    return None


def prepare(cfg: Any, out_dir: Path) -> PrepareStats:
    stats = PrepareStats(cfg.name, cfg.hf_id, cfg.hf_config, cfg.revision, cfg.local_path)
    splits = sorted(cfg.splits, key=lambda s: s != TRAIN_SPLIT)
    train_seen: set[str] | None = None
    for split in splits:
        rows = source_rows(cfg, split, splits)
        seen: set[str] = set()
        path = out_dir / f"{split}.jsonl"
        with AtomicJsonlWriter(path) as out:
            for row in rows:
                stats.rows_read[split] += 1
                post = post_text(row)
                reason = drop_reason(post, cfg, seen, None if split == TRAIN_SPLIT else train_seen)
                if reason:
                    stats.drop(split, reason)
                    continue
                seen.add(normalise(post))
                out.write(prompt_record(cfg.name, split, post, cfg.system_prompt))
        stats.written[split] = out.count
        stats.outputs[split] = str(path)
        if split == TRAIN_SPLIT:
            train_seen = seen
    if TRAIN_SPLIT not in splits:
        stats.notes.append("no train split read: validation posts were not checked against train")
    return stats
