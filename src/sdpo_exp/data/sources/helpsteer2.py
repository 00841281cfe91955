"""HelpSteer2 prompts (`nvidia/HelpSteer2`, splits train and validation) for the online setting.

Kept: single-turn prompts (a prompt holding `<extra_id_` is a flattened multi-turn conversation),
prompt and response at most 2,048 characters, each prompt once per split (rows repeat a prompt with
several responses; the first row whose response passes the filter keeps it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prepare_stats import PrepareStats
from sdpo_exp.data.raw import source_rows
from sdpo_exp.data.sources.prompts import normalise, prompt_record


def drop_reason(row: dict[str, Any], cfg: Any, seen: set[str]) -> str | None:
    prompt, response = row.get("prompt"), row.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str):
        return "malformed"
    if not prompt.strip():
        return "empty_prompt"
    if cfg.multi_turn_marker and cfg.multi_turn_marker in prompt:
        return "multi_turn"
    if len(prompt) > cfg.max_prompt_chars:
        return "prompt_too_long"
    if len(response) > cfg.max_response_chars:
        return "response_too_long"
    if normalise(prompt) in seen:
        return "duplicate"
    return None


def prepare(cfg: Any, out_dir: Path) -> PrepareStats:
    stats = PrepareStats(cfg.name, cfg.hf_id, cfg.hf_config, cfg.revision, cfg.local_path)
    for split in cfg.splits:
        rows = source_rows(cfg, split, cfg.splits)
        seen: set[str] = set()
        path = out_dir / f"{split}.jsonl"
        with AtomicJsonlWriter(path) as out:
            for row in rows:
                stats.rows_read[split] += 1
                reason = drop_reason(row, cfg, seen)
                if reason:
                    stats.drop(split, reason)
                    continue
                seen.add(normalise(row["prompt"]))
                out.write(prompt_record(cfg.name, split, row["prompt"]))
        stats.written[split] = out.count
        stats.outputs[split] = str(path)
    return stats
