"""Conversation sources (WildFeedback, WildChat): raw conversations -> interaction files.

Per conversation: language filter (when `languages` is set), the cleaning (with `rules.clean_first`),
the conversation filters and the split rule of :mod:`sdpo_exp.data.conversations`; whole conversations
go to `train.jsonl` or, for a `heldout_fraction` of them chosen by a hash of their id, to `eval.jsonl`.
Reading stops, between conversations, once `max_conversations` conversations passed the filters, or
once `max_interactions` interactions are written and at least `min_conversations_to_stop` passed.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from sdpo_exp.data.conversations import (
    ConversationRules,
    MalformedConversation,
    clean_messages,
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


def conversation_id(row: dict[str, Any], id_fields: list[str], split: str, index: int) -> str:
    """The first of `id_fields` the row has (non-empty), else `<split>-<row number>`."""
    for name in id_fields:
        value = row.get(name)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return str(value)
    return f"{split}-{index}"


def _rules(cfg: Any) -> ConversationRules:
    r = cfg.rules
    return ConversationRules(
        min_messages=r.min_messages,
        max_total_chars=r.max_total_chars,
        max_assistant_chars=r.max_assistant_chars,
        max_user_chars=r.max_user_chars,
        clean_first=r.clean_first,
        history_messages=r.history_messages,
        same_role_runs=getattr(r.same_role_runs, "value", r.same_role_runs),
    )


class _Limits:
    """The stopping rule; conversations count when they pass the filters (as in the authors' script),
    whether or not an interaction survives the split rule."""

    def __init__(self, cfg: Any, stats: PrepareStats) -> None:
        self.cfg, self.stats = cfg, stats

    def reached(self) -> str | None:
        passed = self.stats.counts["conversations_passed_filters"]
        written = self.stats.counts["interactions_written"]
        if self.cfg.max_conversations is not None and passed >= self.cfg.max_conversations:
            return f"max_conversations={self.cfg.max_conversations}"
        if (
            self.cfg.max_interactions is not None
            and written >= self.cfg.max_interactions
            and passed >= self.cfg.min_conversations_to_stop
        ):
            return (
                f"max_interactions={self.cfg.max_interactions} with at least "
                f"min_conversations_to_stop={self.cfg.min_conversations_to_stop} conversations"
            )
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
    removed = None
    if rules.clean_first:
        messages, removed = clean_messages(messages)
    reason = conversation_drop_reason(messages, rules)
    if reason:
        stats.drop("conversation", reason)
        return
    stats.counts["conversations_passed_filters"] += 1
    conv_id = conversation_id(row, list(cfg.id_fields), split, index)
    meta = {"source": cfg.name, **{k: row[k] for k in META_FIELDS if isinstance(row.get(k), str)}}
    result = split_conversation(messages, conv_id, rules, meta)
    for reason, n in result.dropped.items():
        stats.drop("interaction", reason, n)
    for reason, n in (removed or result.messages_removed).items():
        stats.counts[f"messages_removed_{reason}"] += n
    stats.counts["assistant_messages_without_followup"] += result.final_assistant
    stats.counts["histories_with_same_role_runs"] += result.same_role_histories
    if not result.interactions:
        stats.drop("conversation", "no_interaction")
        return
    stats.counts["conversations_kept"] += 1
    stats.counts["interactions_written"] += len(result.interactions)
    out = held if with_eval and heldout_score(conv_id, cfg.heldout_seed) < cfg.heldout_fraction else train
    for interaction in result.interactions:
        out.write(interaction.to_record())
