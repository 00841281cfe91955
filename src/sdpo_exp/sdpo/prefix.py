"""Shared-prefix teacher pass: the teacher reuses the keys/values of the context it shares with x.

The teacher sequence (x, o) equals the student sequence x token for token up to the point where the
hindsight block is inserted (the end of the last user message's text). For row b that common
prefix has P_b tokens: the longest common prefix of the two context id rows, capped so that the
teacher still computes the hidden state that predicts its first completion token (P_b <= teacher
context length - 1) and so that the prefix lies inside x's context (P_b <= student context length).

Keys/values of the prefix are recorded during a pass that runs anyway with the same weights (the
student's forward for the current weights, the `kl_to_ref` reference pass for the initial ones):
`PrefixRecorder` is passed as `past_key_values` to that forward, keeps a detached view of the first
max_b P_b positions of every layer's keys/values and returns them unchanged, so the recorded pass is
exactly the plain one and nothing is copied. `suffix_completion_hidden_states` then runs the teacher
on its suffix only, each row from its own P_b on:

    cache slots  [0, P_max)           the recorded prefix; row b's slots P_b..P_max-1 are masked out
    query slots  [P_max, P_max + L)   teacher_ids[b, P_b:] right-padded to L = max_b (T_b - P_b)
    position ids P_b + t              (RoPE rotates each token by its position in the full sequence)

Attention masks work on slot indices (causal by slot, plus the 2D padding mask over prefix and suffix
slots), so a row whose prefix is shorter than P_max sees exactly its own prefix and suffix tokens.

This is the one module of `sdpo` that imports transformers: a Hugging Face model's forward takes
keys/values only through its `Cache` classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer

from sdpo_exp.sdpo.logprobs import at_completion_positions, decoder_hidden_states, unwrap_model

log = logging.getLogger(__name__)


def shared_prefix_lengths(
    student_ids: torch.Tensor,
    student_prompt_lens: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_prompt_lens: torch.Tensor,
) -> torch.Tensor:
    """(B,) long: P_b, the number of leading context tokens the teacher row shares with the student row
    (capped at min(student context length, teacher context length - 1))."""
    width = min(student_ids.shape[1], teacher_ids.shape[1])
    same = (student_ids[:, :width] == teacher_ids[:, :width]).long()
    common = same.cumprod(dim=1).sum(dim=1)
    cap = torch.minimum(student_prompt_lens, teacher_prompt_lens - 1).clamp(min=0)
    return torch.minimum(common, cap.to(common.device))


@dataclass
class PrefixKV:
    """Keys and values (B, heads, P_max, head_dim) per layer of a recorded prefix, and P_b per row."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: torch.Tensor  # (B,) long

    @property
    def width(self) -> int:
        return int(self.keys[0].shape[-2]) if self.keys else 0


class _RecordingLayer(DynamicLayer):
    """Keeps a detached view of the first `width` key/value positions and returns its input as is."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.keys = key_states[:, :, : self.width].detach()
        self.values = value_states[:, :, : self.width].detach()
        return key_states, value_states

    def get_seq_length(self) -> int:  # the recorded pass itself starts from an empty cache
        return 0


class _PrefixLayer(DynamicLayer):
    """A read-only prefix: each update returns prefix + new keys/values and stores nothing, so that
    one recorded prefix can serve several passes and no layer's concatenation outlives its layer."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


class PrefixRecorder(Cache):
    """`past_key_values` for a forward whose first `width` (default `lengths.max()`) positions'
    keys/values are wanted."""

    def __init__(self, num_layers: int, lengths: torch.Tensor, width: int | None = None) -> None:
        self.lengths = lengths
        width = int(lengths.max()) if width is None else int(width)
        super().__init__(layers=[_RecordingLayer(width) for _ in range(num_layers)])

    def prefix(self) -> PrefixKV | None:
        """The recorded prefix, or None when some layer was not recorded (a model whose attention does
        not go through the cache)."""
        if any(layer.keys is None for layer in self.layers):
            log.warning("Not every layer recorded its keys/values: the teacher takes the plain pass")
            return None
        return PrefixKV(
            [layer.keys for layer in self.layers], [layer.values for layer in self.layers], self.lengths
        )


def prefix_cache(keys: list[torch.Tensor], values: list[torch.Tensor]) -> Cache:
    """A read-only cache holding recorded keys/values, for a forward that continues after them."""
    return Cache(layers=[_PrefixLayer(k, v) for k, v in zip(keys, values, strict=True)])


def num_layers(model: nn.Module) -> int:
    config = unwrap_model(model).config.get_text_config(decoder=True)
    return int(config.num_hidden_layers)


def reuse_problem(model: nn.Module, training: bool) -> str | None:
    """Why keys/values recorded in a pass of `model` cannot stand for those of an eval-mode pass (None
    when they can). `training`: whether the recorded pass runs in train mode (the student's)."""
    base = unwrap_model(model)
    config = base.config.get_text_config(decoder=True)
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layers of kinds {sorted(kinds)} (only full attention keeps every prefix position)"
    if not training:
        return None
    for name, module in base.named_modules():
        if getattr(module, "gradient_checkpointing", False) is True:
            return "gradient checkpointing (the student's forward keeps no cache)"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"dropout in train mode ({name or 'model'}: p={module.p})"
    for key, value in config.to_dict().items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float) and value > 0:
            return f"dropout in train mode (config {key}={value})"
    return None


def recorded_hidden_states(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, PrefixKV | None]:
    """(B, S, H) final hidden states of a normal forward (with or without gradient) and the keys/values
    of its first max(lengths) positions (None if the model did not record them)."""
    recorder = PrefixRecorder(num_layers(model), lengths)
    hidden = decoder_hidden_states(model, input_ids, attention_mask, past_key_values=recorder, use_cache=True)
    return hidden, recorder.prefix()


def suffix_inputs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix: PrefixKV
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(suffix ids (B, L), attention mask over prefix and suffix slots (B, P_max + L), position ids
    (B, L)) for rows whose first P_b tokens are in the prefix cache."""
    lengths = prefix.lengths.to(input_ids.device)
    totals = attention_mask.sum(dim=1)
    span = int((totals - lengths).max())
    steps = torch.arange(span, device=input_ids.device)
    index = (lengths[:, None] + steps).clamp(max=input_ids.shape[1] - 1)
    suffix_valid = steps < (totals - lengths)[:, None]
    prefix_valid = torch.arange(prefix.width, device=input_ids.device) < lengths[:, None]
    mask = torch.cat([prefix_valid, suffix_valid], dim=1).to(attention_mask.dtype)
    return input_ids.gather(1, index), mask, index


def suffix_completion_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_mask: torch.Tensor,
    prefix: PrefixKV,
) -> torch.Tensor:
    """(N, H) hidden states predicting the N valid completion tokens (row-major), as
    `completion_hidden_states` gives them, computed on the suffix after each row's recorded prefix."""
    ids, mask, positions = suffix_inputs(input_ids, attention_mask, prefix)
    cache = prefix_cache(prefix.keys, prefix.values)
    hidden = decoder_hidden_states(
        model, ids, mask, past_key_values=cache, position_ids=positions, use_cache=True
    )
    return at_completion_positions(
        hidden, prompt_lens - prefix.lengths.to(prompt_lens.device), completion_mask
    )
