"""Per-token log-probabilities of completions without (batch x sequence x vocab) logits.

The decoder runs once over the whole sequence (through the top-level model, so that DDP, PEFT and
accelerate hooks see a normal forward, with `logits_to_keep=1` so that the model itself computes
almost no logits); its hidden states are kept only at the positions that predict completion
tokens, flattened to (N, H) over the valid tokens of the batch. The LM head is then applied to
`chunk_size` positions at a time and reduced at once (target logit minus logsumexp, in float32 even
for bf16 models). With gradients, each chunk is recomputed in the backward pass instead of being
stored, so peak memory holds the logits of one chunk, not of the sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from sdpo_exp.sdpo.fused_head import linear_token_logprobs
from sdpo_exp.sdpo.sharding import full_weight

log = logging.getLogger(__name__)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside DDP/FSDP/compile wrappers and PEFT (adapters stay injected)."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
            model = model.get_base_model()
        else:
            break
    return model


class LogitHead:
    """hidden (n, H) -> float32 (float64 for a float64 model) logits (n, V): the model's output layer and its logit transforms
    (Gemma 2 soft-capping, Cohere's logit_scale, Granite's logits_scaling)."""

    def __init__(
        self,
        module: nn.Module | None = None,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        softcap: float | None = None,
        scale: float = 1.0,
    ) -> None:
        if (module is None) == (weight is None):
            raise ValueError("give either the head module or its weight")
        self.module, self.weight, self.bias = module, weight, bias
        self.softcap, self.scale = softcap, scale

    @classmethod
    def of(cls, model: nn.Module) -> LogitHead:
        base = unwrap_model(model)
        module = base.get_output_embeddings()
        if module is None:
            raise ValueError(f"{type(base).__name__} has no output embeddings (LM head)")
        config = base.config
        scale = float(getattr(config, "logit_scale", None) or 1.0)  # Cohere multiplies
        scale /= float(getattr(config, "logits_scaling", None) or 1.0)  # Granite divides
        return cls(module=module, softcap=getattr(config, "final_logit_softcapping", None), scale=scale)

    def frozen(self, copy: bool = False) -> LogitHead:
        """The same head with its current weights captured as tensors (for a teacher whose weights
        are swapped in only while its hidden states are computed); `copy` for weights whose storage
        is reused (FSDP's gathered weights)."""
        if self.weight is not None:
            return self
        if type(self.module) is not nn.Linear:
            raise ValueError(
                f"the LM head is a {type(self.module).__name__} (e.g. adapted by LoRA); only a plain "
                "Linear head can be captured for a teacher with other weights"
            )
        weight = self.module.weight.detach()
        bias = None if self.module.bias is None else self.module.bias.detach()
        if copy:
            weight = full_weight(weight).clone()
            bias = None if bias is None else full_weight(bias, "the LM head's bias").clone()
        return LogitHead(weight=weight, bias=bias, softcap=self.softcap, scale=self.scale)

    def linear_parts(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(weight, bias) when the head is a plain Linear layer (the fast path), else None."""
        if self.weight is not None:
            return full_weight(self.weight), self.bias
        if type(self.module) is nn.Linear:
            return full_weight(self.module.weight), self.module.bias
        return None

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.module is not None:
            logits = self.module(hidden)
        else:
            logits = F.linear(hidden.to(self.weight.dtype), self.weight, self.bias)
        if logits.dtype != torch.float64:  # reduce in float32 at least (float64 models stay float64)
            logits = logits.float()
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def decoder_hidden_states(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **forward_kwargs: Any
) -> torch.Tensor:
    """(B, S, H) final hidden states (after the last norm), from a normal forward of `model`
    (`forward_kwargs`, e.g. a cache and position ids, go to the forward; no cache by default)."""
    decoder = unwrap_model(model).get_decoder()
    captured: list[torch.Tensor] = []

    def grab(_module: nn.Module, _args: object, output: object) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handle = decoder.register_forward_hook(grab)
    try:
        kwargs = {"use_cache": False, **forward_kwargs}
        model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, **kwargs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"expected one decoder call per forward, saw {len(captured)}")
    return captured[0]


def completion_positions(
    prompt_lens: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the hidden states that predict each valid completion token, flattened in
    row-major order of `completion_mask`: token j of row b is predicted at prompt_lens[b] + j - 1."""
    batch, width = completion_mask.shape
    cols = (
        prompt_lens.to(completion_mask.device)[:, None]
        + torch.arange(width, device=completion_mask.device)
        - 1
    )
    rows = torch.arange(batch, device=completion_mask.device)[:, None].expand(batch, width)
    return rows[completion_mask], cols[completion_mask]


def check_alignment(
    input_ids: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
) -> None:
    """Raise ValueError unless row b holds completion_ids[b] right after its prompt_lens[b] context tokens."""
    if completion_mask.dtype != torch.bool:
        raise ValueError("completion_mask must be a bool tensor (built from lengths)")
    if bool((prompt_lens < 1).any()):
        raise ValueError("every row needs at least one context token before its completion")
    rows, cols = completion_positions(prompt_lens, completion_mask)
    if cols.numel() and int(cols.max()) + 1 >= input_ids.shape[1]:
        raise ValueError("completion positions run past the end of input_ids")
    if not torch.equal(input_ids[rows, cols + 1], completion_ids[completion_mask]):
        raise ValueError("completion_ids do not match input_ids after the prompt: sequences are misaligned")


def completion_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_mask: torch.Tensor,
) -> torch.Tensor:
    """(N, H) hidden states predicting the N valid completion tokens (row-major order)."""
    hidden = decoder_hidden_states(model, input_ids, attention_mask)
    return at_completion_positions(hidden, prompt_lens, completion_mask)


def at_completion_positions(
    hidden: torch.Tensor, prompt_lens: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """(N, H): the rows of (B, S, H) `hidden` that predict the N valid completion tokens."""
    rows, cols = completion_positions(prompt_lens, completion_mask)
    return hidden[rows, cols]


def needs_grad(hidden: torch.Tensor, head: LogitHead) -> bool:
    if not torch.is_grad_enabled():
        return False
    if hidden.requires_grad:
        return True
    params = head.module.parameters() if head.module is not None else [head.weight]
    return any(p.requires_grad for p in params)


def map_chunks(
    fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    tensors: list[torch.Tensor],
    chunk_size: int,
    recompute: bool,
) -> tuple[torch.Tensor, ...]:
    """Apply fn to row-chunks of `tensors` (all (N, ...)) and concatenate its outputs.

    With `recompute`, each chunk runs under activation checkpointing: nothing of size
    (chunk, vocab) is kept for backward; the chunk is recomputed when its gradient is needed.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    total = tensors[0].shape[0]
    outputs: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, total, chunk_size):
        parts = [t[start : start + chunk_size] for t in tensors]
        if recompute:
            out = checkpoint(fn, *parts, use_reentrant=False, preserve_rng_state=False)
        else:
            out = fn(*parts)
        outputs.append(out if isinstance(out, tuple) else (out,))
    if not outputs:  # no tokens: run once on the empty slice for correctly shaped outputs
        out = fn(*[t[:0] for t in tensors])
        outputs.append(out if isinstance(out, tuple) else (out,))
    return tuple(torch.cat(column) for column in zip(*outputs, strict=True))


def chunked_token_logprobs(
    hidden: torch.Tensor, head: LogitHead, targets: torch.Tensor, chunk_size: int = 128
) -> torch.Tensor:
    """(N,) float32 log p(target_n | hidden_n), differentiable when grad is enabled.

    A plain Linear head takes the fused path (`fused_head`: analytic backward); any other head (e.g.
    one adapted by LoRA) is recomputed per chunk under activation checkpointing.
    """
    linear = head.linear_parts()
    if linear is not None:
        return linear_token_logprobs(hidden, *linear, targets, chunk_size, head.scale, head.softcap)

    def one_chunk(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = head(h)
        return logits.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)

    (out,) = map_chunks(one_chunk, [hidden, targets], chunk_size, needs_grad(hidden, head))
    return out


@dataclass
class LogitMixture:
    """Logits formed as sum_k coef_k * head_k(hidden_k), chunk by chunk (a teacher's logits; a
    trust-region teacher mixes the base and the current model). Never differentiated."""

    parts: list[tuple[float, torch.Tensor, LogitHead]]

    @classmethod
    def single(cls, hidden: torch.Tensor, head: LogitHead) -> LogitMixture:
        return cls([(1.0, hidden, head)])

    @property
    def num_tokens(self) -> int:
        return int(self.parts[0][1].shape[0])

    def hidden_list(self) -> list[torch.Tensor]:
        return [h.detach() for _, h, _ in self.parts]

    def logits(self, hidden_chunks: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            total = None
            for (coef, _, head), h in zip(self.parts, hidden_chunks, strict=True):
                z = head(h)
                z = z if coef == 1.0 else z * coef
                total = z if total is None else total + z
            return total

    def token_logprobs(self, targets: torch.Tensor, chunk_size: int = 128) -> torch.Tensor:
        """(N,) float32 log-probs of `targets` under the mixed logits."""
        with torch.no_grad():
            if len(self.parts) == 1 and self.parts[0][0] == 1.0:
                _, hidden, head = self.parts[0]
                return chunked_token_logprobs(hidden, head, targets, chunk_size)

            def one_chunk(t: torch.Tensor, *hs: torch.Tensor) -> torch.Tensor:
                logits = self.logits(list(hs))
                return logits.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)

            (out,) = map_chunks(one_chunk, [targets, *self.hidden_list()], chunk_size, recompute=False)
        return out


def scatter_to_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) values of the True entries of `mask` (row-major) back to mask's shape, zeros elsewhere."""
    out = values.new_zeros(mask.shape)
    out[mask] = values
    return out


def completion_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    chunk_size: int = 128,
) -> torch.Tensor:
    """(B, C) float32 log p(completion token | everything before it), 0 where the mask is False.

    Logits exist only for completion positions, `chunk_size` tokens at a time; differentiable when
    called with grad enabled (the teacher calls it under torch.no_grad).
    """
    check_alignment(input_ids, prompt_lens, completion_ids, completion_mask)
    hidden = completion_hidden_states(model, input_ids, attention_mask, prompt_lens, completion_mask)
    values = chunked_token_logprobs(hidden, LogitHead.of(model), completion_ids[completion_mask], chunk_size)
    return scatter_to_rows(values, completion_mask)
