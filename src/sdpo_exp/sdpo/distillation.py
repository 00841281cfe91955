"""The distillation divergence between the student and the teacher, per completion token, chunk by
chunk: no (N, V) log-prob tensor of either model exists at once. A top-K divergence through a plain
Linear head takes the fused path (`fused_topk`); any other goes through `logprobs.map_chunks`, with
each chunk recomputed in backward."""

from __future__ import annotations

from collections.abc import Callable

import torch

from sdpo_exp.sdpo.divergences import TopKDivergence
from sdpo_exp.sdpo.fused_topk import linear_topk_divergence
from sdpo_exp.sdpo.logprobs import LogitHead, LogitMixture, map_chunks, needs_grad


def chunked_divergence(
    hidden: torch.Tensor,
    head: LogitHead,
    teacher: LogitMixture,
    targets: torch.Tensor,
    divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    temperature: float = 1.0,
    chunk_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token divergence(student, teacher) over the vocabulary, chunk by chunk.

    Returns (divergence (N,), differentiable w.r.t. the student; student log-prob of each target
    (N,), detached; teacher log-prob of each target (N,)). Log-probs of the targets are at
    temperature 1; the divergence compares log_softmax(logits / temperature). Neither full (N, V)
    student nor teacher log-prob tensors ever exist: each chunk is recomputed in backward. A top-K
    divergence through a plain Linear head takes the fused path (`fused_topk`: analytic backward,
    no recomputation of the teacher).
    """
    linear = head.linear_parts()
    if isinstance(divergence, TopKDivergence) and linear is not None:
        return linear_topk_divergence(
            hidden, *linear, targets, teacher, divergence, temperature, chunk_size, head.scale, head.softcap
        )

    def normalise(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp = torch.log_softmax(logits, dim=-1)
        lp_div = lp if temperature == 1.0 else torch.log_softmax(logits / temperature, dim=-1)
        return lp, lp_div

    def one_chunk(
        h: torch.Tensor, t: torch.Tensor, *teacher_hidden: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        lp_s, lp_s_div = normalise(head(h))
        with torch.no_grad():
            lp_t, lp_t_div = normalise(teacher.logits(list(teacher_hidden)))
            idx = t[:, None]
            s_tok, t_tok = lp_s.detach().gather(1, idx).squeeze(1), lp_t.gather(1, idx).squeeze(1)
        return divergence(lp_s_div, lp_t_div), s_tok, t_tok

    recompute = needs_grad(hidden, head)
    div, s_tok, t_tok = map_chunks(
        one_chunk, [hidden, targets, *teacher.hidden_list()], chunk_size, recompute
    )
    return div, s_tok.detach(), t_tok.detach()
