"""Padding-free (packed) passes: the rows of a right-padded batch laid end to end in one sequence.

A right-padded (B, S) batch runs the decoder on B * S slots, of which only sum_b n_b hold tokens;
with the lengths of logged conversations (tens to thousands of tokens) most of the work is padding.
A packed pass runs the decoder once on the (1, T) sequence of every row's tokens (T = sum_b n_b):

    slot starts[b] + t    token t of row b (t < n_b), at position t of its own row (RoPE)
    attention             causal inside each row, nothing across rows (a block-diagonal mask)

so every token sees exactly what it sees in the padded pass, and the hidden states predicting the
completion tokens are picked at slots starts[b] + prompt_len_b + j - 1 in the same row-major order.
The mask is built here as a 4D mask for the SDPA and eager attention kernels; flash-attention
kernels take no mask and separate the rows by the restarting position ids instead.

The shared-prefix teacher pass (`prefix`) packs too: the student's packed forward records the keys
and values of its whole sequence, and the teacher's suffixes, packed, attend to slot j of that
recording iff it belongs to their row and its position is below the row's prefix length P_b.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sdpo_exp.sdpo.logprobs import (
    at_completion_positions,
    completion_hidden_states,
    decoder_hidden_states,
    unwrap_model,
)
from sdpo_exp.sdpo.prefix import (
    PrefixKV,
    PrefixRecorder,
    num_layers,
    prefix_cache,
    recorded_hidden_states,
    suffix_completion_hidden_states,
)

FLASH_PREFIX = "flash"  # attention implementations whose names start with it take no 4D mask


@dataclass(frozen=True)
class PackedRows:
    """Where each row of a right-padded batch lies in the packed sequence."""

    starts: torch.Tensor  # (B,) long: the slot of each row's first token
    lengths: torch.Tensor  # (B,) long: n_b
    doc: torch.Tensor  # (T,) long: the row of each slot
    pos: torch.Tensor  # (T,) long: the position of each slot within its row
    first: torch.Tensor  # (B,) long: the position of each row's first packed token (0, or P_b)

    @classmethod
    def of(cls, attention_mask: torch.Tensor, offsets: torch.Tensor | None = None) -> PackedRows:
        """The layout of the rows' valid tokens (from `offsets[b]` on, when given: a suffix)."""
        lengths = attention_mask.sum(dim=1).long()
        first = torch.zeros_like(lengths) if offsets is None else offsets.to(lengths.device).long()
        spans = lengths - first
        if bool((spans < 0).any()):
            raise ValueError("a row's offset lies past its last token")
        starts = torch.cumsum(spans, 0) - spans
        doc = torch.repeat_interleave(torch.arange(len(spans), device=spans.device), spans)
        pos = torch.arange(doc.numel(), device=spans.device) - starts[doc] + first[doc]
        return cls(starts=starts, lengths=lengths, doc=doc, pos=pos, first=first)

    @property
    def total(self) -> int:
        return int(self.doc.numel())

    def pack(self, ids: torch.Tensor) -> torch.Tensor:
        """(1, T): the tokens of `ids` (B, S) at this layout's slots."""
        return ids[self.doc, self.pos][None]

    def completion_slots(self, prompt_lens: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        """(N,) the slots whose hidden states predict the valid completion tokens, row-major: token j
        of row b is predicted at position prompt_lens[b] + j - 1 of its row."""
        batch, width = completion_mask.shape
        cols = (
            prompt_lens.to(completion_mask.device)[:, None]
            + torch.arange(width, device=completion_mask.device)
            - 1
        )
        slots = (self.starts - self.first)[:, None] + cols
        return slots[completion_mask]


def _check_right_padded(attention_mask: torch.Tensor) -> None:
    lengths = attention_mask.sum(dim=1)
    expected = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None] < lengths[:, None]
    if not torch.equal(attention_mask.bool(), expected):
        raise ValueError("packing takes right-padded rows (every mask row ones, then zeros)")


def attention_kind(model: nn.Module) -> str:
    """The model's attention implementation (config._attn_implementation), "eager" when unset."""
    config = unwrap_model(model).config
    return str(getattr(config, "_attn_implementation", None) or "eager")


def takes_4d_mask(model: nn.Module) -> bool:
    return not attention_kind(model).startswith(FLASH_PREFIX)


def block_mask(
    model: nn.Module,
    q_doc: torch.Tensor,
    q_pos: torch.Tensor,
    kv_doc: torch.Tensor,
    kv_pos: torch.Tensor,
) -> torch.Tensor:
    """(1, 1, Q, K) mask letting query i see key j iff they belong to the same row and j's position
    is not after i's. Boolean for SDPA, additive (0 / dtype minimum) for eager attention."""
    allowed = ((q_doc[:, None] == kv_doc[None, :]) & (kv_pos[None, :] <= q_pos[:, None]))[None, None]
    if attention_kind(model) == "sdpa":
        return allowed
    dtype = unwrap_model(model).get_input_embeddings().weight.dtype
    if not dtype.is_floating_point:
        dtype = torch.float32
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


@dataclass
class PackedPrefix:
    """Keys and values (1, heads, T_s, head_dim) per layer of a whole packed (student) sequence, the
    rows and positions of its slots, and P_b: how much of each row a teacher suffix may see."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    rows: PackedRows
    lengths: torch.Tensor  # (B,) long


def packed_completion_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_mask: torch.Tensor,
    record: torch.Tensor | None = None,
) -> tuple[torch.Tensor, PackedPrefix | None]:
    """(N, H) hidden states predicting the valid completion tokens, row-major (as the padded pass
    gives them), from one packed forward; with `record` (P_b per row) also the keys/values of the
    whole packed sequence for teacher suffixes (None if the model did not record them)."""
    _check_right_padded(attention_mask)
    rows = PackedRows.of(attention_mask)
    ids, positions = rows.pack(input_ids), rows.pos[None]
    mask = block_mask(model, rows.doc, rows.pos, rows.doc, rows.pos) if takes_4d_mask(model) else None
    kwargs: dict = {"position_ids": positions}
    recorder = None
    if record is not None:
        recorder = PrefixRecorder(num_layers(model), record, width=rows.total)
        kwargs.update(past_key_values=recorder, use_cache=True)
    hidden = decoder_hidden_states(model, ids, mask, **kwargs)[0]
    hidden = hidden[rows.completion_slots(prompt_lens, completion_mask)]
    prefix = None
    if recorder is not None:
        recorded = recorder.prefix()
        if recorded is not None:
            prefix = PackedPrefix(recorded.keys, recorded.values, rows, record.to(rows.doc.device))
    return hidden, prefix


def packed_suffix_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_mask: torch.Tensor,
    prefix: PackedPrefix,
) -> torch.Tensor:
    """(N, H) hidden states predicting the valid completion tokens of the teacher rows, computed on
    each row's suffix after its first P_b tokens, whose keys/values come from `prefix`."""
    if not takes_4d_mask(model):
        raise ValueError("a packed shared-prefix pass needs SDPA or eager attention (a 4D mask)")
    _check_right_padded(attention_mask)
    rows = PackedRows.of(attention_mask, offsets=prefix.lengths)
    ids, positions = rows.pack(input_ids), rows.pos[None]
    cached = prefix.rows
    kv_doc, kv_pos = torch.cat([cached.doc, rows.doc]), torch.cat([cached.pos, rows.pos])
    mask = block_mask(model, rows.doc, rows.pos, kv_doc, kv_pos)
    # a recorded slot serves its row's suffix only below P_b (the student's tokens after it differ)
    usable = torch.cat([cached.pos < prefix.lengths[cached.doc], torch.ones_like(rows.pos, dtype=torch.bool)])
    mask = _restrict(mask, usable)
    cache = prefix_cache(prefix.keys, prefix.values)
    hidden = decoder_hidden_states(
        model, ids, mask, past_key_values=cache, position_ids=positions, use_cache=True
    )[0]
    return hidden[rows.completion_slots(prompt_lens, completion_mask)]


def _restrict(mask: torch.Tensor, keys_allowed: torch.Tensor) -> torch.Tensor:
    """`mask` with the keys where `keys_allowed` is False hidden from every query."""
    if mask.dtype == torch.bool:
        return mask & keys_allowed[None, None, None, :]
    return mask.masked_fill(~keys_allowed[None, None, None, :], torch.finfo(mask.dtype).min)


# -- the passes of a batch, padded or packed ------------------------------------------------------
def context_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_mask: torch.Tensor,
    packed: bool,
    record: torch.Tensor | None = None,
) -> tuple[torch.Tensor, PrefixKV | PackedPrefix | None]:
    """(N, H) hidden states predicting the valid completion tokens, from a padded or a packed pass;
    with `record` (P_b per row) also the recorded prefix keys/values for teacher suffixes."""
    args = (model, input_ids, attention_mask, prompt_lens, completion_mask)
    if packed:
        return packed_completion_hidden_states(*args, record=record)
    if record is None:
        return completion_hidden_states(*args), None
    full, prefix = recorded_hidden_states(model, input_ids, attention_mask, record)
    return at_completion_positions(full, prompt_lens, completion_mask), prefix


def suffix_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_mask: torch.Tensor,
    prefix: PrefixKV | PackedPrefix,
) -> torch.Tensor:
    """(N, H) teacher hidden states computed after a recorded prefix, in the prefix's layout."""
    args = (model, input_ids, attention_mask, prompt_lens, completion_mask, prefix)
    if isinstance(prefix, PackedPrefix):
        return packed_suffix_hidden_states(*args)
    return suffix_completion_hidden_states(*args)


def packing_problem(model: nn.Module, shared_prefix: bool) -> str | None:
    """Why this model's passes cannot be packed (None when they can)."""
    config = unwrap_model(model).config.get_text_config(decoder=True)
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layers of kinds {sorted(kinds)} (a packed mask is plain causal attention)"
    if getattr(config, "layer_types", None) is None and getattr(config, "sliding_window", None) is not None:
        if getattr(config, "use_sliding_window", True):
            return f"a sliding attention window ({config.sliding_window} tokens; a packed mask is plain causal attention)"
    kind = attention_kind(model)
    if kind in ("sdpa", "eager"):
        return None
    if kind.startswith(FLASH_PREFIX):
        if shared_prefix:
            return f"attn_implementation={kind} takes no 4D mask, which the packed shared-prefix pass needs"
        return None
    return f"attn_implementation={kind} is neither sdpa, eager nor flash attention"
