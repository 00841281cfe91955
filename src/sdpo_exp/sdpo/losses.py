"""The loss family as small functions over (B, C) per-token tensors, and the signal metrics.

Notation: m the completion mask, s_i = log pi(y_i | x, y_<i) (student, with gradient),
t_i = log pi_teacher(y_i | x, o, y_<i) (no gradient), A_i = t_i - s_i (detached), L_b = sum_i m_bi.

Normalisation is step-wide. Every loss returns per-sequence numerators n_b; `normaliser_units`
says how many units each sequence brings; the loss of a step is sum_b n_b / sum_b u_b over every
sequence of the step (all micro-batches, all processes), whatever the split:
- sequence: n_b = sum_i m_bi v_bi / L_b, u_b = 1 if L_b > 0 else 0 (the mean over sequences that
  have loss tokens; a sequence with none is left out of the mean, not counted as a zero);
- token:    n_b = sum_i m_bi v_bi,       u_b = L_b (the mean over every token of the step).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable: loss_sum / max(units, 1), this batch on its own
    loss_sum: torch.Tensor  # scalar, differentiable: sum of the per-sequence numerators
    units: float  # this batch's normaliser units (see the module docstring)
    metrics: dict[str, float]
    student_logprobs: torch.Tensor  # (B, C) detached, 0 off the mask
    teacher_logprobs: torch.Tensor  # (B, C) detached (zeros for sft)
    advantages: torch.Tensor | None = None  # (B, C) raw A = teacher - student, detached (None for sft)
    per_sequence: torch.Tensor | None = None  # (B,) differentiable numerators; loss_sum == per_sequence.sum()


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def _norm(length_norm: Any) -> str:
    norm = str(_value(length_norm))
    if norm not in ("sequence", "token"):
        raise ValueError(f"unknown length_norm {norm!r}")
    return norm


def reduce_tokens(values: torch.Tensor, mask: torch.Tensor, length_norm: Any) -> torch.Tensor:
    """Per-sequence numerators (B,) of per-token values (B, C) (see the module docstring)."""
    maskf = mask.to(values.dtype)
    sums = (values * maskf).sum(dim=1)
    if _norm(length_norm) == "sequence":
        return sums / maskf.sum(dim=1).clamp(min=1.0)
    return sums


def normaliser_units(mask: torch.Tensor, length_norm: Any) -> torch.Tensor:
    """(B,) units each sequence adds to the step's denominator: 1 or 0 (sequence), L_b (token)."""
    lengths = mask.sum(dim=1)
    if _norm(length_norm) == "sequence":
        return (lengths > 0).to(torch.float64)
    return lengths.to(torch.float64)


def advantages(
    teacher_logprobs: torch.Tensor, student_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """A = teacher - student, detached, 0 off the mask: the token-level signal of SDPO."""
    return (teacher_logprobs - student_logprobs).detach() * mask.to(student_logprobs.dtype)


def loss_mask(mask: torch.Tensor, ignore_first_k: int = 0) -> torch.Tensor:
    """The completion mask without each sequence's first k positions."""
    if ignore_first_k <= 0:
        return mask
    out = mask.clone()
    out[:, :ignore_first_k] = False
    return out


def shape_advantages(
    advantages: torch.Tensor, mask: torch.Tensor, center: bool = False, clip: float | None = None
) -> torch.Tensor:
    """Optionally centre A per sequence (subtract its mean over the masked tokens), then clip to +-clip."""
    adv = advantages.detach()
    if center:
        maskf = mask.to(adv.dtype)
        mean = (adv * maskf).sum(1, keepdim=True) / maskf.sum(1, keepdim=True).clamp(min=1.0)
        adv = adv - mean
    if clip is not None:
        adv = adv.clamp(-clip, clip)
    return adv * mask.to(adv.dtype)


def pg_loss(
    student_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    length_norm: Any = "sequence",
) -> torch.Tensor:
    """Per-sequence policy-gradient numerators of sum_i -A_i s_i m_i (paper eq. 5); A is detached.

    With sequence normalisation the gradient of the step's loss is -mean_b sum_i A_i grad s_i / L_b."""
    return reduce_tokens(-advantages.detach() * student_logprobs, mask, length_norm)


def sft_loss(student_logprobs: torch.Tensor, mask: torch.Tensor, length_norm: Any = "token") -> torch.Tensor:
    """Per-sequence numerators of the negative log-likelihood of the completion under x."""
    return reduce_tokens(-student_logprobs, mask, length_norm)


def importance_weights(
    learner: torch.Tensor, sampler: torch.Tensor, mask: torch.Tensor, clip: float | None
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Truncated importance weights w = min(exp(learner - sampler), clip) of (B, C) per-token log-probs
    (1 where the sampler's is unknown, NaN), None when `clip` is None; and the metrics of the mismatch
    between sampler and learner: mean |learner - sampler| over the known tokens (always), the mean
    weight and the share of tokens clipped (with `clip`)."""
    known = mask & ~torch.isnan(sampler)
    log_ratio = torch.where(known, learner.detach() - torch.nan_to_num(sampler), torch.zeros_like(learner))
    metrics: dict[str, float] = {}
    if bool(known.any()):
        metrics["is_log_ratio_abs_mean"] = float(log_ratio[known].abs().double().mean())
    if clip is None:
        return None, metrics
    ratio = log_ratio.exp()
    weights = torch.where(known, ratio.clamp(max=float(clip)), torch.ones_like(ratio))
    if bool(known.any()):
        metrics["is_weight_mean"] = float(weights[known].double().mean())
        metrics["is_clip_frac"] = float((ratio[known] > float(clip)).double().mean())
    return weights.detach(), metrics


def divergence_loss(divergence: torch.Tensor, mask: torch.Tensor, length_norm: Any = "token") -> torch.Tensor:
    """Per-sequence reduction of per-position divergences (full_kl, topk, jsd)."""
    return reduce_tokens(divergence, mask, length_norm)


def kl_to_ref_penalty(
    student_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, length_norm: Any
) -> torch.Tensor:
    """Per-sequence numerators of the k1 penalty through the score function: sum_i sg(s_i - r_i) s_i.

    Its gradient, sum_i (s_i - r_i) grad s_i, is in expectation over y ~ pi the gradient of
    KL(pi || pi_ref); for pg it equals subtracting beta * (s_i - r_i) from A_i.
    """
    k1 = (student_logprobs - ref_logprobs).detach()
    return reduce_tokens(k1 * student_logprobs, mask, length_norm)


def _mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    n = int(mask.sum())
    return float(values[mask].double().sum() / n) if n else 0.0


def signal_metrics(
    student_logprobs: torch.Tensor,
    teacher_logprobs: torch.Tensor | None,
    mask: torch.Tensor,
    eos_mask: torch.Tensor | None = None,
) -> dict[str, float]:
    """Metrics of the raw signal A = teacher - student over every completion token."""
    metrics = {
        "num_tokens": float(mask.sum()),
        "num_sequences": float(mask.shape[0]),
        "student_logprob_mean": _mean(student_logprobs, mask),
    }
    if teacher_logprobs is None:
        return metrics
    adv = advantages(teacher_logprobs, student_logprobs, mask)
    values = adv[mask].double()
    metrics.update(
        teacher_logprob_mean=_mean(teacher_logprobs, mask),
        adv_mean=float(values.mean()) if values.numel() else 0.0,
        adv_abs_mean=float(values.abs().mean()) if values.numel() else 0.0,
        adv_std=float(values.std(unbiased=False)) if values.numel() else 0.0,
        adv_pos_frac=float((values > 0).double().mean()) if values.numel() else 0.0,
    )
    if eos_mask is not None:
        eos = eos_mask & mask
        metrics["num_eos_tokens"] = float(eos.sum())
        if bool(eos.any()):
            metrics["adv_eos_mean"] = _mean(adv, eos)
    return metrics


def eos_positions(mask: torch.Tensor, completion_ended: torch.Tensor | None) -> torch.Tensor | None:
    """(B, C) bool: the last valid position of each completion that ended with the end-of-turn token."""
    if completion_ended is None:
        return None
    lengths = mask.sum(1)
    out = torch.zeros_like(mask)
    rows = torch.nonzero(completion_ended.to(mask.device) & (lengths > 0)).squeeze(1)
    out[rows, lengths[rows] - 1] = True
    return out
