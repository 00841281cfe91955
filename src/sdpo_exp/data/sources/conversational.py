"""Conversation sources (WildFeedback, WildChat): raw conversations -> interaction files.

Per conversation: language filter (when `languages` is set), the conversation filters and the split
rule of :mod:`sdpo_exp.data.conversations`; whole conversations go to `train.jsonl` or, for a
`heldout_fraction` of them chosen by a hash of their id, to `eval.jsonl`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from sdpo_exp.data.conversations import (
    ConversationRules,
    MalformedConversation,
    conversation_drop_reason,
    parse_messages,
    split_conversation,
)
from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prepare_stats import PrepareStats
from sdpo_exp.data.raw import source_rows

log = logging.getLogger(__name__)

META_FIELDS = ("model", "language")


def heldout_score(conversation_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the id and the seed; conversations below the fraction are held out."""
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _conversation_id(row: dict[str, Any], id_field: str | None, split: str, index: int) -> str:
    value = row.get(id_field) if id_field else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"{split}-{index}"
    return str(value)


def _rules(cfg: Any) -> ConversationRules:
    r = cfg.rules
    return ConversationRules(
        min_messages=r.min_messages,
        max_total_chars=r.max_total_chars,
        max_assistant_chars=r.max_assistant_chars,
        history_messages=r.history_messages,
    )


class _Limits:
    def __init__(self, cfg: Any, stats: PrepareStats) -> None:
        self.cfg, self.stats = cfg, stats

    def reached(self) -> str | None:
        kept, written = self.stats.counts["conversations_kept"], self.stats.counts["interactions_written"]
        if self.cfg.max_conversations is not None and kept >= self.cfg.max_conversations:
            return f"max_conversations={self.cfg.max_conversations}"
        if self.cfg.max_interactions is not None and written >= self.cfg.max_interactions:
            return f"max_interactions={self.cfg.max_interactions}"
        return None


def prepare(cfg: Any, out_dir: Path) -> PrepareStats:
    stats = PrepareStats(cfg.name, cfg.hf_id, cfg.hf_config, cfg.revision, cfg.local_path)
    rules = _rules(cfg)
    languages = {lang.lower() for lang in cfg.languages}
    limits = _Limits(cfg, stats)
    with_eval = cfg.heldout_fraction > 0
    train_path, eval_path = out_dir / "train.jsonl", out_dir / "eval.jsonl"
    with AtomicJsonlWriter(train_path) as train, AtomicJsonlWriter(eval_path) as held:
        for split in cfg.splits:
            rows = source_rows(cfg, split, cfg.splits, cfg.shuffle_seed)
            stop = limits.reached()
            for index, row in enumerate(rows):
                if stop:
                    break
                stats.rows_read[split] += 1
                _one_conversation(cfg, rules, languages, split, index, row, stats, train, held, with_eval)
                stop = limits.reached()
            if stop:
                stats.counts["stopped_early"] = 1
                stats.notes.append(f"stopped after {sum(stats.rows_read.values())} rows: {stop}")
                log.info("Stopped reading at %s", stop)
                break
    stats.written["train"] = train.count
    stats.outputs["train"] = str(train_path)
    if with_eval:
        stats.written["eval"] = held.count
        stats.outputs["eval"] = str(eval_path)
        if held.count == 0:
            stats.notes.append("heldout_fraction > 0 but no conversation was held out")
            log.warning(
                "heldout_fraction=%s selected no conversation: eval.jsonl is empty", cfg.heldout_fraction
            )
    else:
        eval_path.unlink(missing_ok=True)
    return stats


def _one_conversation(cfg, rules, languages, split, index, row, stats, train, held, with_eval) -> None:
    if languages:
        language = row.get(cfg.language_field)
        if not isinstance(language, str) or language.strip().lower() not in languages:
            stats.drop("conversation", "language")
            return
    try:
        messages = parse_messages(row.get(cfg.messages_field), cfg.role_key, cfg.content_key)
    except MalformedConversation as exc:
        stats.drop("conversation", "malformed")
        log.debug("%s row %d malformed: %s", split, index, exc)
        return
    reason = conversation_drop_reason(messages, rules)
    if reason:
        stats.drop("conversation", reason)
        return
    conversation_id = _conversation_id(row, cfg.id_field, split, index)
    meta = {"source": cfg.name, **{k: row[k] for k in META_FIELDS if isinstance(row.get(k), str)}}
    result = split_conversation(messages, conversation_id, rules, meta)
    for reason, n in result.dropped.items():
        stats.drop("interaction", reason, n)
    for reason, n in result.messages_removed.items():
        stats.counts[f"messages_removed_{reason}"] += n
    stats.counts["assistant_messages_without_followup"] += result.final_assistant
    if not result.interactions:
        stats.drop("conversation", "no_interaction")
        return
    stats.counts["conversations_kept"] += 1
    stats.counts["interactions_written"] += len(result.interactions)
    out = (
        held
        if with_eval and heldout_score(conversation_id, cfg.heldout_seed) < cfg.heldout_fraction
        else train
    )
    for interaction in result.interactions:
        out.write(interaction.to_record())
