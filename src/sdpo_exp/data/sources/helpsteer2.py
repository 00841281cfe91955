"""HelpSteer2 prompts (`nvidia/HelpSteer2`, splits train and validation) for the online setting.

As the authors' script: prompt and response stripped (`strip`); a row without either is dropped;
single-turn prompts only (a prompt matching `multi_turn_pattern`, `<extra_id_N>`, is a flattened
multi-turn conversation); prompt and response at most 2,048 characters; each prompt once per split
(`dedup`: the exact text; rows repeat a prompt with several responses, and the first row whose
response passes the filter keeps it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prepare_stats import PrepareStats
from sdpo_exp.data.raw import source_rows
from sdpo_exp.data.sources.prompts import dedup_key, prompt_record


def texts(row: dict[str, Any], strip: bool) -> tuple[str, str] | None:
    """(prompt, response) of a row, stripped when asked; None when either is not a string."""
    prompt, response = row.get("prompt"), row.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str):
        return None
    return (prompt.strip(), response.strip()) if strip else (prompt, response)


def drop_reason(
    prompt: str, response: str, cfg: Any, multi_turn: re.Pattern | None, seen: set[str]
) -> str | None:
    if not prompt.strip():
        return "empty_prompt"
    if not response.strip():
        return "empty_response"
    if multi_turn is not None and multi_turn.search(prompt):
        return "multi_turn"
    if len(prompt) > cfg.max_prompt_chars:
        return "prompt_too_long"
    if len(response) > cfg.max_response_chars:
        return "response_too_long"
    if dedup_key(prompt, cfg.dedup) in seen:
        return "duplicate"
    return None


def prepare(cfg: Any, out_dir: Path) -> PrepareStats:
    stats = PrepareStats(cfg.name, cfg.hf_id, cfg.hf_config, cfg.revision, cfg.local_path)
    multi_turn = re.compile(cfg.multi_turn_pattern, re.IGNORECASE) if cfg.multi_turn_pattern else None
    for split in cfg.splits:
        rows = source_rows(cfg, split, cfg.splits)
        seen: set[str] = set()
        path = out_dir / f"{split}.jsonl"
        with AtomicJsonlWriter(path) as out:
            for row in rows:
                stats.rows_read[split] += 1
                pair = texts(row, cfg.strip)
                reason = "malformed" if pair is None else drop_reason(*pair, cfg, multi_turn, seen)
                if reason:
                    stats.drop(split, reason)
                    continue
                key = dedup_key(pair[0], cfg.dedup)
                seen.add(key)
                out.write(prompt_record(cfg.name, split, pair[0], key=key))
        stats.written[split] = out.count
        stats.outputs[split] = str(path)
    return stats
