"""Student and teacher token sequences for a batch of interactions, aligned token for token.

Each row holds [context ids][completion ids] for the student (x) and the teacher ((x, o)). The
completion ids are tokenised once and shared by both sequences, so position j of the completion is
the same token in both. Sequences are right-padded; every mask comes from lengths, never from
`id != pad_id` (the pad token is the EOS token for many models, and the EOS of a completion that
ended must keep its signal).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from sdpo_exp.chat import encode_text, end_of_turn_id, stop_token_ids
from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.hindsight import SkipInteraction, teacher_context, template_text
from sdpo_exp.sdpo.truncation import fit_contexts

log = logging.getLogger(__name__)


@dataclass
class SDPOBatch:
    student_input_ids: torch.Tensor  # (B, S) long: context ids + completion ids, right-padded
    student_attention_mask: torch.Tensor  # (B, S) long, from lengths
    student_prompt_lens: torch.Tensor  # (B,) long: number of context tokens
    teacher_input_ids: torch.Tensor  # (B, T) long: teacher context ids + the same completion ids
    teacher_attention_mask: torch.Tensor  # (B, T) long
    teacher_prompt_lens: torch.Tensor  # (B,) long
    completion_ids: torch.Tensor  # (B, C) long, right-padded
    completion_mask: torch.Tensor  # (B, C) bool, from lengths
    interactions: list[Interaction] = field(default_factory=list)
    student_texts: list[str] = field(default_factory=list)
    teacher_texts: list[str] = field(default_factory=list)
    # (B,) bool: the completion ended naturally and its last token is the end-of-turn token
    completion_ended: torch.Tensor | None = None
    completions_truncated: int = 0  # rows whose completion was cut to max_completion_tokens
    context_messages_dropped: int = 0  # whole history messages dropped to fit max_prompt_tokens
    # (B, C) float32: the sampler's log-prob of each completion token (NaN where unknown: a token it
    # did not draw, padding); None unless every row has them
    sampler_logprobs: torch.Tensor | None = None
    # run the model's passes over this batch padding-free (rows packed into one sequence; `packing`)
    packed: bool = False

    def to(self, device: torch.device | str) -> SDPOBatch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return SDPOBatch(**moved)

    def __len__(self) -> int:
        return int(self.student_input_ids.shape[0])

    @property
    def num_completion_tokens(self) -> int:
        return int(self.completion_mask.sum())


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def collate_encoded(encoded: Sequence[Mapping[str, Any]], pad_id: int) -> SDPOBatch:
    """Pad per-example encodings (see `BatchBuilder.encode_one`) into a batch.

    Required keys: student_ids, teacher_ids, completion_ids (the context ids without the completion).
    Optional: completion_ended, interaction, student_text, teacher_text, completion_truncated,
    dropped_messages, sampler_logprobs (one value or None per completion token).
    """
    if not encoded:
        raise ValueError("cannot collate an empty list of examples")
    completions = [list(e["completion_ids"]) for e in encoded]
    if any(len(c) == 0 for c in completions):
        raise ValueError("every example needs at least one completion token")
    students = [list(e["student_ids"]) + c for e, c in zip(encoded, completions, strict=True)]
    teachers = [list(e["teacher_ids"]) + c for e, c in zip(encoded, completions, strict=True)]
    s_ids, s_mask = _pad(students, pad_id)
    t_ids, t_mask = _pad(teachers, pad_id)
    c_ids, c_mask = _pad(completions, pad_id)
    sampler = None
    if all(e.get("sampler_logprobs") is not None for e in encoded):
        sampler = torch.full(c_ids.shape, float("nan"), dtype=torch.float32)
        for i, e in enumerate(encoded):
            values = [float("nan") if v is None else float(v) for v in e["sampler_logprobs"]]
            if len(values) != len(completions[i]):
                raise ValueError("sampler_logprobs must have one value per completion token")
            sampler[i, : len(values)] = torch.tensor(values, dtype=torch.float32)
    return SDPOBatch(
        student_input_ids=s_ids,
        student_attention_mask=s_mask,
        student_prompt_lens=torch.tensor([len(e["student_ids"]) for e in encoded], dtype=torch.long),
        teacher_input_ids=t_ids,
        teacher_attention_mask=t_mask,
        teacher_prompt_lens=torch.tensor([len(e["teacher_ids"]) for e in encoded], dtype=torch.long),
        completion_ids=c_ids,
        completion_mask=c_mask.bool(),
        interactions=[e["interaction"] for e in encoded if "interaction" in e],
        student_texts=[e["student_text"] for e in encoded if "student_text" in e],
        teacher_texts=[e["teacher_text"] for e in encoded if "teacher_text" in e],
        completion_ended=torch.tensor([bool(e.get("completion_ended", False)) for e in encoded]),
        completions_truncated=sum(bool(e.get("completion_truncated", False)) for e in encoded),
        context_messages_dropped=sum(int(e.get("dropped_messages", 0)) for e in encoded),
        sampler_logprobs=sampler,
    )


class BatchBuilder:
    """Turns interactions (x, y, o) into aligned student/teacher batches for one tokenizer.

    The tokenizer is only read (never re-configured: no padding side, no pad token changes).
    """

    def __init__(
        self,
        tokenizer: Any,
        hindsight: Any,
        chat_template_kwargs: Mapping[str, Any] | None,
        max_prompt_tokens: int,
        max_completion_tokens: int,
    ) -> None:
        if max_prompt_tokens < 1 or max_completion_tokens < 1:
            raise ValueError("max_prompt_tokens and max_completion_tokens must be positive")
        self.tokenizer = tokenizer
        self.hindsight = hindsight
        self.chat_template_kwargs = _plain_dict(chat_template_kwargs)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.max_completion_tokens = int(max_completion_tokens)
        template_text(hindsight)  # fail now, not per example, on a bad template choice
        self.eot_id = end_of_turn_id(tokenizer, self.chat_template_kwargs)
        self.stop_ids = set(stop_token_ids(tokenizer, self.chat_template_kwargs))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)

    @classmethod
    def from_config(cls, cfg: Any, tokenizer: Any) -> BatchBuilder:
        """From the composed run config: hindsight, model.chat_template_kwargs, trainer limits."""
        return cls(
            tokenizer,
            cfg.hindsight,
            cfg.model.chat_template_kwargs,
            cfg.trainer.max_prompt_tokens,
            cfg.trainer.max_completion_tokens,
        )

    def completion_token_ids(self, interaction: Interaction) -> tuple[list[int], bool, bool]:
        """(ids, ended, truncated): the completion's ids, tokenised once, with the end-of-turn token
        when it ended naturally, cut to max_completion_tokens (a cut completion has no EOS)."""
        if interaction.completion_ids is not None:
            ids = [int(i) for i in interaction.completion_ids]
        elif isinstance(interaction.completion, str) and interaction.completion.strip():
            ids = encode_text(self.tokenizer, interaction.completion)
        else:
            ids = []
        if not ids:
            raise SkipInteraction("empty_completion")
        ended = bool(interaction.completion_ended)
        if ended and ids[-1] not in self.stop_ids:
            ids.append(self.eot_id)
        truncated = len(ids) > self.max_completion_tokens
        if truncated:
            ids, ended = ids[: self.max_completion_tokens], False
        return ids, ended, truncated

    def encode_one(self, interaction: Interaction) -> dict[str, Any]:
        """Tokenise one interaction; raises SkipInteraction (with a reason) for unusable input."""
        teacher_context(interaction.context, interaction.followup, self.hindsight)  # checks x and o
        completion, ended, truncated = self.completion_token_ids(interaction)
        fitted = fit_contexts(
            self.tokenizer,
            list(interaction.context),
            lambda ctx: teacher_context(ctx, interaction.followup, self.hindsight),
            self.chat_template_kwargs,
            self.max_prompt_tokens,
        )
        return {
            "sampler_logprobs": sampler_logprobs(interaction, len(completion)),
            "student_ids": fitted.student_ids,
            "teacher_ids": fitted.teacher_ids,
            "completion_ids": completion,
            "completion_ended": ended,
            "completion_truncated": truncated,
            "dropped_messages": fitted.dropped_messages,
            "student_text": fitted.student_text,
            "teacher_text": fitted.teacher_text,
            "interaction": interaction,
        }

    def collate(self, encoded: Sequence[Mapping[str, Any]]) -> SDPOBatch:
        return collate_encoded(encoded, self.pad_id)

    def build(self, interactions: Sequence[Interaction]) -> tuple[SDPOBatch | None, collections.Counter[str]]:
        """The batch of the usable interactions (None if none) and the skip counts by reason."""
        skipped: collections.Counter[str] = collections.Counter()
        encoded = []
        for interaction in interactions:
            try:
                encoded.append(self.encode_one(interaction))
            except SkipInteraction as exc:
                skipped[exc.reason] += 1
                log.debug("skipped interaction %s: %s", getattr(interaction, "id", None), exc)
        return (self.collate(encoded) if encoded else None), skipped


def sampler_logprobs(interaction: Interaction, length: int) -> list[float | None] | None:
    """The sampler's log-probs for the `length` completion tokens the batch uses (cut like the ids;
    None for an end-of-turn token appended to them), or None when there are none (or no sampled ids)."""
    values = interaction.completion_logprobs
    if values is None or interaction.completion_ids is None:
        return None
    if len(values) != len(interaction.completion_ids):
        raise SkipInteraction("completion_logprobs_mismatch")
    values = list(values[:length])
    return values + [None] * (length - len(values))


def skip_metrics(skipped: Mapping[str, int]) -> dict[str, float]:
    """Skip counts as metrics named `skipped/<reason>`."""
    return {f"skipped/{reason}": float(count) for reason, count in sorted(skipped.items())}


def _plain_dict(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    if mapping is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(mapping, DictConfig):
            return dict(OmegaConf.to_container(mapping, resolve=True))
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(mapping)
