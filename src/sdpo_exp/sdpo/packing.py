"""Padding-free (packed) passes: the rows of a right-padded batch laid end to end in a few sequences.

A right-padded (B, S) batch runs the decoder on B * S slots, of which only sum_b n_b hold tokens;
with the lengths of logged conversations (tens to thousands of tokens) most of the work is padding.
A packed pass puts the rows into K sequences ("bins") of width W, first fit in decreasing order of
length, W being the longest row, so no bin is longer than a padded row was:

    bin k, slot starts[b] + t    token t of row b (t < n_b), at position t of its own row (RoPE)
    attention                    causal inside each row, nothing across rows (a block-diagonal mask)

Every token sees exactly what it sees in the padded pass, and the hidden states predicting the
completion tokens are picked at slot starts[b] + prompt_len_b + j - 1 of row b's bin, in the same
row-major order. Packing into bins no wider than the longest row keeps the attention work of a bin
(W^2 with a dense mask: the SDPA and eager kernels do not skip masked blocks) at that of one padded
row, while the linear layers, most of the work, run on about sum_b n_b slots instead of B * S. The
free slots at the end of a bin attend to themselves only. The mask is 4D for SDPA and eager
attention; flash-attention kernels take no mask and separate rows by the restarting position ids.

The shared-prefix teacher pass (`prefix`) packs too: the student's packed forward records the keys
and values of its bins, each row's teacher suffix goes into the bin of its student row, and attends
to a recorded slot iff that slot belongs to its row at a position below the row's prefix length P_b.
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
FREE = -1  # the row of a free slot at the end of a bin


def first_fit_bins(spans: list[int], capacity: int) -> list[int]:
    """The bin of each row: rows in decreasing order of span, each into the first bin it fits."""
    loads: list[int] = []
    bins = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda i: (-spans[i], i)):
        for k, load in enumerate(loads):
            if load + spans[i] <= capacity:
                loads[k] += spans[i]
                bins[i] = k
                break
        else:
            loads.append(spans[i])
            bins[i] = len(loads) - 1
    return bins


@dataclass(frozen=True)
class PackedRows:
    """Where each row of a right-padded batch lies in the packed bins."""

    bins: torch.Tensor  # (B,) long: the bin of each row
    starts: torch.Tensor  # (B,) long: the slot of each row's first packed token in its bin
    first: torch.Tensor  # (B,) long: the position of each row's first packed token (0, or P_b)
    doc: torch.Tensor  # (K, W) long: the row of each slot (FREE for a free slot)
    pos: torch.Tensor  # (K, W) long: the position of each slot within its row (0 when free)

    @classmethod
    def of(
        cls,
        attention_mask: torch.Tensor,
        offsets: torch.Tensor | None = None,
        bins: torch.Tensor | None = None,
    ) -> PackedRows:
        """The layout of the rows' tokens from `offsets[b]` on (all of them without offsets) in the
        given bins (default: first fit, decreasing, no bin wider than the longest row)."""
        lengths = attention_mask.sum(dim=1).long()
        first = torch.zeros_like(lengths) if offsets is None else offsets.to(lengths.device).long()
        spans = (lengths - first).tolist()
        if any(span < 0 for span in spans):
            raise ValueError("a row's offset lies past its last token")
        chosen = first_fit_bins(spans, max(spans, default=0)) if bins is None else bins.tolist()
        count = max(chosen, default=-1) + 1
        loads, starts = [0] * count, []
        for k, span in zip(chosen, spans, strict=True):
            starts.append(loads[k])
            loads[k] += span
        width = max(max(loads, default=0), 1)
        device = attention_mask.device
        doc = torch.full((max(count, 1), width), FREE, dtype=torch.long, device=device)
        pos = torch.zeros_like(doc)
        for b, (k, start, span) in enumerate(zip(chosen, starts, spans, strict=True)):
            doc[k, start : start + span] = b
            pos[k, start : start + span] = torch.arange(int(first[b]), int(first[b]) + span, device=device)
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
        return cls(bins=as_tensor(chosen), starts=as_tensor(starts), first=first, doc=doc, pos=pos)

    @property
    def width(self) -> int:
        return int(self.doc.shape[1])

    def pack(self, ids: torch.Tensor) -> torch.Tensor:
        """(K, W): the tokens of `ids` (B, S) at this layout's slots (token 0 in free slots)."""
        used = self.doc != FREE
        out = torch.zeros(self.doc.shape, dtype=ids.dtype, device=ids.device)
        out[used] = ids[self.doc[used], self.pos[used]]
        return out

    def completion_slots(self, prompt_lens: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        """(N,) flat indices into (K * W) of the slots whose hidden states predict the valid completion
        tokens, row-major: token j of row b is predicted at position prompt_lens[b] + j - 1 of its row."""
        width = completion_mask.shape[1]
        cols = (
            prompt_lens.to(completion_mask.device)[:, None]
            + torch.arange(width, device=completion_mask.device)
            - 1
        )
        slots = (self.bins * self.width + self.starts - self.first)[:, None] + cols
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


def allowed_keys(
    q_doc: torch.Tensor,
    q_pos: torch.Tensor,
    kv_doc: torch.Tensor,
    kv_pos: torch.Tensor,
    free_see_self: bool = True,
) -> torch.Tensor:
    """(K, Q, Kv) bool: query i of a bin may see key j iff both belong to the same row and j's
    position is not after i's; a free query slot sees only key slot i (itself, when the keys are the
    queries' own slots: `free_see_self`), so that no query's attention is empty."""
    same = (q_doc[:, :, None] == kv_doc[:, None, :]) & (q_doc[:, :, None] != FREE)
    allowed = same & (kv_pos[:, None, :] <= q_pos[:, :, None])
    free = q_doc == FREE
    if free_see_self and bool(free.any()):
        slots = torch.arange(q_doc.shape[1], device=q_doc.device)
        itself = torch.zeros_like(allowed)
        itself[:, slots, slots] = True
        allowed |= itself & free[:, :, None]
    return allowed


def as_attention_mask(model: nn.Module, allowed: torch.Tensor) -> torch.Tensor:
    """(K, 1, Q, Kv) from (K, Q, Kv) allowed pairs: boolean for SDPA, additive (0 / the dtype's
    minimum) for eager attention."""
    allowed = allowed[:, None]
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
    """Keys and values (K, heads, W_s, head_dim) per layer of the packed (student) bins, their
    layout, and P_b: how much of each row a teacher suffix may see."""

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
    packed bins for teacher suffixes (None if the model did not record them)."""
    _check_right_padded(attention_mask)
    rows = PackedRows.of(attention_mask)
    mask = None
    if takes_4d_mask(model):
        mask = as_attention_mask(model, allowed_keys(rows.doc, rows.pos, rows.doc, rows.pos))
    kwargs: dict = {"position_ids": rows.pos}
    recorder = None
    if record is not None:
        recorder = PrefixRecorder(num_layers(model), record, width=rows.width)
        kwargs.update(past_key_values=recorder, use_cache=True)
    hidden = decoder_hidden_states(model, rows.pack(input_ids), mask, **kwargs)
    hidden = hidden.reshape(-1, hidden.shape[-1])[rows.completion_slots(prompt_lens, completion_mask)]
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
    cached = prefix.rows
    rows = PackedRows.of(attention_mask, offsets=prefix.lengths, bins=cached.bins)
    recorded = allowed_keys(rows.doc, rows.pos, cached.doc, cached.pos, free_see_self=False)
    # a recorded slot serves its row's suffix only below P_b (the student's tokens after it differ)
    below = torch.zeros_like(cached.doc, dtype=torch.bool)
    used = cached.doc != FREE
    below[used] = cached.pos[used] < prefix.lengths.to(cached.doc.device)[cached.doc[used]]
    recorded &= below[:, None, :]
    own = allowed_keys(rows.doc, rows.pos, rows.doc, rows.pos)
    mask = as_attention_mask(model, torch.cat([recorded, own], dim=2))
    hidden = decoder_hidden_states(
        model,
        rows.pack(input_ids),
        mask,
        past_key_values=prefix_cache(prefix.keys, prefix.values),
        position_ids=rows.pos,
        use_cache=True,
    )
    return hidden.reshape(-1, hidden.shape[-1])[rows.completion_slots(prompt_lens, completion_mask)]


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
