"""Sampling completions from a policy with transformers' ``generate``.

The sampling parameters of the ``generation`` config are used exactly as given. ``generate`` fills
every field that a passed ``GenerationConfig`` leaves unset (None) from the model's own
``generation_config`` (Qwen3 ships temperature 0.6, top_p 0.95, top_k 20) or from library defaults
(top_k 50). So every field that shapes the sampling distribution is set here explicitly, to the
configured value or to its neutral value, and during the call the model's own generation config is
replaced by a blank one, so that a field this module does not know about cannot leak in either.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
from transformers import GenerationConfig as HFGenerationConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sdpo_exp.chat import render_ids, stop_token_ids

log = logging.getLogger(__name__)

# Fields of transformers' GenerationConfig that change which token is drawn, with their neutral values.
NEUTRAL_SAMPLING = {
    "min_p": 0.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "num_beams": 1,
    "num_beam_groups": 1,
    "min_new_tokens": 0,
    "num_return_sequences": 1,
    "length_penalty": 1.0,
    "renormalize_logits": False,
    "remove_invalid_values": False,
}


class Sample(NamedTuple):
    """One sampled completion: the token ids as generated (the end-of-turn token included when the
    model produced it), the decoded text without special tokens, whether it ended naturally, and,
    when recorded, the sampler's log-probability of each id (of the model's own distribution, before
    temperature or top-k/top-p), for the off-policy correction of `loss.is_clip`."""

    ids: list[int]
    text: str
    ended: bool
    logprobs: list[float | None] | None = None


def _get(cfg: Any, key: str) -> Any:
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


def hf_generation_config(
    gen_cfg: Any, tokenizer: PreTrainedTokenizerBase, eos_ids: Sequence[int]
) -> HFGenerationConfig:
    """A transformers GenerationConfig with every sampling-relevant field set explicitly from `gen_cfg`
    (keys do_sample, temperature, top_p, top_k, max_new_tokens)."""
    do_sample = bool(_get(gen_cfg, "do_sample"))
    temperature = float(_get(gen_cfg, "temperature"))
    top_p = float(_get(gen_cfg, "top_p"))
    top_k = int(_get(gen_cfg, "top_k"))
    max_new_tokens = int(_get(gen_cfg, "max_new_tokens"))
    if max_new_tokens < 1:
        raise ValueError(f"generation.max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ValueError(f"generation.temperature must be > 0 when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"generation.top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"generation.top_k must be >= 0 (0 disables it), got {top_k}")
    return HFGenerationConfig(
        do_sample=do_sample,
        # Greedy decoding ignores them; neutral values keep transformers from warning about them.
        temperature=temperature if do_sample else 1.0,
        top_p=top_p if do_sample else 1.0,
        top_k=top_k if do_sample else 0,
        max_new_tokens=max_new_tokens,
        eos_token_id=list(eos_ids),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0],
        bos_token_id=tokenizer.bos_token_id,
        use_cache=True,
        **NEUTRAL_SAMPLING,
    )


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _cut(row: list[int], eos_ids: Sequence[int]) -> tuple[list[int], bool]:
    """The generated ids up to and including the first end-of-turn token."""
    for index, token_id in enumerate(row):
        if token_id in eos_ids:
            return row[: index + 1], True
    return row, False


def _generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    hf_cfg: HFGenerationConfig,
    logprobs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sequences, (B, new tokens) float32 log-probs of the drawn tokens under the raw logits, or None)."""
    # A PEFT wrapper delegates generate() to the model it wraps: blank that model's config.
    owner = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = owner.generation_config
    owner.generation_config = HFGenerationConfig()
    try:
        if not logprobs:
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=hf_cfg)
            return out, None
        recording = copy.deepcopy(hf_cfg)
        recording.output_logits = True  # the raw logits of each step, before any sampling transform
        recording.return_dict_in_generate = True
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=recording)
    finally:
        owner.generation_config = own
    drawn = out.sequences[:, input_ids.shape[1] :]
    values = [
        torch.log_softmax(step.float(), dim=-1).gather(1, drawn[:, t : t + 1]).squeeze(1)
        for t, step in enumerate(out.logits)
    ]
    return out.sequences, torch.stack(values, dim=1) if values else drawn.float()


@torch.no_grad()
def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    messages_batch: Sequence[Sequence[Mapping[str, str]]],
    gen_cfg: Any,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    stop_ids: Sequence[int] | None = None,
    logprobs: bool = False,
) -> list[Sample]:
    """Sample one completion per chat in `messages_batch`, in order (`logprobs`: with the sampler's
    log-probability of each drawn token).

    `gen_cfg` is the ``generation`` config node (do_sample, temperature, top_p, top_k, max_new_tokens,
    batch_size). `stop_ids` end a completion (default: `chat.stop_token_ids`, the end-of-turn token,
    the tokenizer's EOS and the model's); a completion keeps the stop token it produced. Randomness comes from torch's global RNG (seeded by the run).
    """
    if not messages_batch:
        return []
    kwargs = dict(chat_template_kwargs or {})
    eos_ids = [int(i) for i in stop_ids] if stop_ids else stop_token_ids(tokenizer, kwargs, model)
    hf_cfg = hf_generation_config(gen_cfg, tokenizer, eos_ids)
    size = int(batch_size or _get(gen_cfg, "batch_size") or len(messages_batch))
    prompts = [render_ids(tokenizer, messages, kwargs) for messages in messages_batch]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    samples: list[Sample] = []
    try:
        for start in range(0, len(prompts), size):
            chunk = prompts[start : start + size]
            input_ids, attention_mask = _left_pad(chunk, hf_cfg.pad_token_id, device)
            output, drawn_logprobs = _generate(model, input_ids, attention_mask, hf_cfg, logprobs)
            for r, row in enumerate(output[:, input_ids.shape[1] :].tolist()):
                ids, ended = _cut(row, eos_ids)
                text = tokenizer.decode(ids, skip_special_tokens=True)
                values = None if drawn_logprobs is None else drawn_logprobs[r, : len(ids)].tolist()
                samples.append(Sample(ids=ids, text=text, ended=ended, logprobs=values))
            log.debug("Sampled %d/%d completions", len(samples), len(prompts))
    finally:
        model.train(was_training)
    return samples


class HFGenerator:
    """The `hf` backend: transformers' generate on the model it holds (the training model itself for
    the policy, so its weights are always current)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        batch_size: int = 8,
        autocast: Callable[[], AbstractContextManager] | None = None,
        record_logprobs: bool = False,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.record_logprobs = bool(record_logprobs)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.batch_size = int(batch_size)
        # the training run's mixed precision (float32 weights computing in bf16 sample 3x faster on a CPU)
        self.autocast = autocast or nullcontext

    def generate(self, chats: Sequence[Sequence[Mapping[str, str]]], sampling: Any) -> list[Sample]:
        """`sampling` may carry its own `batch_size` (greedy evaluation batches wider than sampling)."""
        size = sampling.get("batch_size") if isinstance(sampling, Mapping) else None
        with self.autocast():
            return sample_completions(
                self.model,
                self.tokenizer,
                chats,
                sampling,
                self.chat_template_kwargs,
                int(size or self.batch_size),
                logprobs=self.record_logprobs,
            )

    def sync_weights(self, model: Any) -> None:
        self.model = model

    def close(self) -> None:
        pass
