"""Per-position divergences between the student and the teacher next-token distributions.

Pure functions over normalised log-probabilities (..., V) in float32; the last dimension is reduced.
Entries of zero probability contribute nothing (0 log 0 = 0), so a distribution restricted to a
support (top-K, a tail bucket that is empty) needs no special case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def kl(lp_p: torch.Tensor, lp_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v), with 0 log 0 = 0."""
    p = lp_p.exp()
    support = p > 0
    diff = torch.where(support, lp_p, 0.0) - torch.where(support, lp_q, 0.0)
    return (p * diff).sum(-1)


def reverse_kl(lp_student: torch.Tensor, lp_teacher: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher): the paper's equation 2, per position."""
    return kl(lp_student, lp_teacher)


def forward_kl(lp_student: torch.Tensor, lp_teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student)."""
    return kl(lp_teacher, lp_student)


def generalized_jsd(lp_student: torch.Tensor, lp_teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """TRL's generalised JSD (`trl.experimental.sdpo`, GKD): with m = (1 - alpha) s + alpha t,
    (1 - alpha) KL(s || m) + alpha KL(t || m) for 0 < alpha < 1.

    alpha = 0 is the forward KL(t || s) and alpha = 1 the reverse KL(s || t), by definition; the
    mixture form itself tends to 0 at both ends (it is not continuous there). alpha = 0.5 is the
    symmetric Jensen-Shannon divergence.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if alpha == 0.0:
        return forward_kl(lp_student, lp_teacher)
    if alpha == 1.0:
        return reverse_kl(lp_student, lp_teacher)
    # Clamping -inf (a token both give zero mass) to a finite floor keeps the backward of logaddexp
    # free of NaN; such entries have zero mass and contribute nothing.
    floor = torch.finfo(lp_student.dtype).min
    lp_mix = torch.logaddexp(
        (lp_student + math.log(1.0 - alpha)).clamp(min=floor), (lp_teacher + math.log(alpha)).clamp(min=floor)
    )
    return (1.0 - alpha) * kl(lp_student, lp_mix) + alpha * kl(lp_teacher, lp_mix)


def topk_restrict(
    lp_student: torch.Tensor, lp_teacher: torch.Tensor, k: int, tail: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both distributions on the student's top-k tokens (chosen without gradient).

    tail="bucket": the k entries (normalised over the full vocabulary) plus one entry holding the
    remaining mass, log sum over the other tokens, computed exactly (not as log(1 - sum)).
    tail="renormalize": the k entries renormalised to sum to one.
    """
    k = min(int(k), lp_student.shape[-1])
    ids = lp_student.detach().topk(k, dim=-1).indices
    s_k, t_k = lp_student.gather(-1, ids), lp_teacher.gather(-1, ids)
    if tail == "renormalize":
        return torch.log_softmax(s_k, dim=-1), torch.log_softmax(t_k, dim=-1)
    if tail != "bucket":
        raise ValueError(f"unknown tail mode {tail!r}")
    in_top = torch.zeros_like(lp_student, dtype=torch.bool).scatter_(-1, ids, True)
    s_tail = torch.logsumexp(lp_student.masked_fill(in_top, -math.inf), dim=-1, keepdim=True)
    t_tail = torch.logsumexp(lp_teacher.masked_fill(in_top, -math.inf), dim=-1, keepdim=True)
    return torch.cat([s_k, s_tail], dim=-1), torch.cat([t_k, t_tail], dim=-1)


@dataclass(frozen=True)
class TopKDivergence:
    """`inner` applied to both distributions restricted to the student's top-k tokens (`topk_restrict`).

    Callable like any divergence; `fused_topk` recognises it and takes its faster path."""

    k: int
    tail: str
    inner: Divergence

    def __call__(self, lp_student: torch.Tensor, lp_teacher: torch.Tensor) -> torch.Tensor:
        return self.inner(*topk_restrict(lp_student, lp_teacher, self.k, self.tail))


def _value(field: Any) -> Any:
    return field.value if isinstance(field, Enum) else field


def make_divergence(loss_cfg: Any) -> tuple[Divergence, float]:
    """(divergence over full-vocabulary log-probs, temperature) for a full_kl, topk or jsd loss config."""
    name = str(loss_cfg.name)
    if name == "full_kl":
        return reverse_kl, 1.0
    if name == "topk":
        return TopKDivergence(int(loss_cfg.k), str(_value(loss_cfg.tail)), reverse_kl), 1.0
    if name == "jsd":
        alpha, top_k = float(loss_cfg.alpha), loss_cfg.top_k
        tail = str(_value(getattr(loss_cfg, "tail", "bucket")))

        def jsd(lp_s: torch.Tensor, lp_t: torch.Tensor) -> torch.Tensor:
            return generalized_jsd(lp_s, lp_t, alpha)

        if top_k is not None:
            return TopKDivergence(int(top_k), tail, jsd), float(loss_cfg.temperature)
        return jsd, float(loss_cfg.temperature)
    raise ValueError(f"loss {name!r} is not a divergence loss")
