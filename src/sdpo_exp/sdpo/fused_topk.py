"""Top-K restricted divergences through a Linear LM head, chunked, with an analytic backward.

For `topk` (and `jsd` with `top_k`) the divergence at a position compares p~ and q~: the student's and
the teacher's distributions (at temperature T) on the student's top-K tokens, plus one bucket with
the remaining mass (tail=bucket), or renormalised over the K tokens (tail=renormalize).

Forward, per chunk: the student's logits z and their top-K (K + 1 with a bucket: the (K+1)-th value
is the largest outside the top, the shift of the tail's logsumexp, which then cannot underflow),
the tail's logsumexp computed in place with the top entries set to -inf, the same reductions of the
teacher's logits at the student's top ids, then the divergence D of the small restricted
distributions and g = dD/dlog p~ by autograd on them. What the backward needs is a few numbers per
position ((n, K) and (n,)); the teacher's logits are never recomputed.

Backward, per chunk, with G = sum_j g_j and p~ the restricted student distribution:

    dD/dz_v = g_i - G p~_i                          v the i-th top token
    dD/dz_v = (p_v / P_tail) (g_tail - G P_tail)    v outside the top (bucket; 0 when renormalised)

where p_v / P_tail = exp(z_v / T - logsumexp of the tail) <= 1 cannot overflow. Then through 1/T, the
logit transforms and the head as in `fused_head` (same matmul dtype as the forward under autocast).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from sdpo_exp.sdpo.divergences import TopKDivergence
from sdpo_exp.sdpo.fused_head import (
    acc_dtype,
    backprop_head,
    cast,
    grad_buffers,
    head_logits,
    matmul_dtype,
)

if TYPE_CHECKING:
    from sdpo_exp.sdpo.logprobs import LogitMixture


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _tail_logsumexp_(z: torch.Tensor, ids: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
    """logsumexp over each row's entries outside `ids`, overwriting z; `shift`: their maximum if known."""
    z.scatter_(1, ids, -math.inf)
    shift = _finite(z.amax(dim=1) if shift is None else shift)
    return shift + z.sub_(shift[:, None]).exp_().sum(dim=1).log()


def reduce_chunk_(
    z: torch.Tensor,
    targets: torch.Tensor,
    k: int,
    bucket: bool,
    temperature: float,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One chunk's logits z (n, V) reduced, z overwritten: (top ids (n, K), the top-K(+1) restricted
    log-probs at temperature T, the tail's logsumexp of z / T (bucket) or None, log-prob of each
    target at temperature 1). `ids`: take these tokens (the teacher's case) instead of z's top-K.

    Log-probs are formed from differences to a value near the row's maximum (as log_softmax does), so
    that they keep float32's relative precision even when the logits themselves are large."""
    target = z.gather(1, targets[:, None]).squeeze(1)
    token = None
    if temperature != 1.0:
        peak = _finite(z.amax(dim=1))
        token = (target - peak) - torch.logsumexp(z - peak[:, None], dim=1)
        z.div_(temperature)
    shift = None
    if ids is None:
        top = z.topk(k + 1 if bucket else k, dim=1)
        ids, values = top.indices[:, :k], top.values[:, :k]
        shift = top.values[:, k] if bucket else None
    else:
        values = z.gather(1, ids)
    tail = None
    if bucket:
        tail = _tail_logsumexp_(z, ids, shift)
        ref = _finite(torch.maximum(values.amax(dim=1), tail))
        values, rest = values - ref[:, None], tail - ref
        lse = torch.logaddexp(rest, torch.logsumexp(values, dim=1))  # relative to ref
        restricted = torch.cat([values - lse[:, None], (rest - lse)[:, None]], dim=1)
        if token is None:
            token = (target - ref) - lse
    else:
        restricted = torch.log_softmax(values, dim=1)
        if token is None:
            peak = _finite(z.amax(dim=1))
            token = (target - peak) - z.sub_(peak[:, None]).exp_().sum(dim=1).log()
    return ids, restricted, tail, token


class LinearTopKDivergence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        teacher: LogitMixture,
        spec: TopKDivergence,
        temperature: float,
        chunk_size: int,
        scale: float,
        softcap: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device_type = hidden.device.type
        mm, acc = matmul_dtype(device_type, weight.dtype), acc_dtype(weight.dtype)
        n, vocab = hidden.shape[0], weight.shape[0]
        k = min(int(spec.k), vocab)
        bucket = spec.tail == "bucket" and k < vocab
        div, s_tok, t_tok, tail_lse, tail_coef = (
            torch.zeros(n, dtype=acc, device=hidden.device) for _ in range(5)
        )
        top_ids = torch.zeros(n, k, dtype=torch.long, device=hidden.device)
        top_coef = torch.zeros(n, k, dtype=acc, device=hidden.device)
        teacher_hidden = teacher.hidden_list()
        with torch.autocast(device_type, enabled=False):
            w, b = weight.to(mm), cast(bias, mm)
        for start in range(0, n, chunk_size):
            rows = slice(start, min(start + chunk_size, n))
            with torch.autocast(device_type, enabled=False):
                z, _ = head_logits(hidden[rows], w, b, scale, softcap, acc)
                ids, lp_s, s_tail, s_tok[rows] = reduce_chunk_(z, targets[rows], k, bucket, temperature)
                del z
            # the teacher's logits as the generic path computes them (under the caller's autocast)
            z_t = teacher.logits([h[rows] for h in teacher_hidden]).to(acc)
            _, lp_t, _, t_tok[rows] = reduce_chunk_(z_t, targets[rows], k, bucket, temperature, ids)
            del z_t
            with torch.enable_grad():
                lp = lp_s.detach().requires_grad_(True)
                d = spec.inner(lp, lp_t)
                (g,) = torch.autograd.grad(d.sum(), lp)
            total, p = g.sum(dim=1), lp_s.exp()
            div[rows], top_ids[rows] = d.detach(), ids
            top_coef[rows] = g[:, :k] - total[:, None] * p[:, :k]
            if bucket:
                tail_coef[rows], tail_lse[rows] = g[:, k] - total * p[:, k], s_tail
        ctx.save_for_backward(hidden, weight, bias, top_ids, top_coef, tail_coef, tail_lse)
        ctx.bucket, ctx.temperature, ctx.chunk_size = bucket, temperature, chunk_size
        ctx.scale, ctx.softcap, ctx.matmul_dtype = scale, softcap, mm
        ctx.mark_non_differentiable(s_tok, t_tok)
        return div, s_tok, t_tok

    @staticmethod
    def backward(ctx, grad_div: torch.Tensor, _grad_s: torch.Tensor, _grad_t: torch.Tensor):
        hidden, weight, bias, top_ids, top_coef, tail_coef, tail_lse = ctx.saved_tensors
        acc, mm, temperature = top_coef.dtype, ctx.matmul_dtype, ctx.temperature
        grads = grad_buffers(ctx.needs_input_grad, hidden, weight, acc)
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = weight.to(mm), cast(bias, mm)
            for start in range(0, hidden.shape[0], ctx.chunk_size):
                rows = slice(start, min(start + ctx.chunk_size, hidden.shape[0]))
                h, g = hidden[rows], grad_div[rows].to(acc)
                z, tanh = head_logits(h, w, b, ctx.scale, ctx.softcap, acc)
                if ctx.bucket:
                    if temperature != 1.0:
                        z.div_(temperature)
                    # top entries may overflow here: the scatter below overwrites them
                    dz = z.sub_(tail_lse[rows, None]).exp_().mul_((tail_coef[rows] * g)[:, None])
                else:
                    dz = z.zero_()
                dz.scatter_(1, top_ids[rows], top_coef[rows] * g[:, None])
                if temperature != 1.0:
                    dz.div_(temperature)
                backprop_head(dz, tanh, h, w, ctx.scale, mm, grads, rows)
        grad_h, grad_w, grad_b = grads
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None


def linear_topk_divergence(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    teacher: LogitMixture,
    spec: TopKDivergence,
    temperature: float = 1.0,
    chunk_size: int = 128,
    scale: float = 1.0,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(divergence (N,), differentiable w.r.t. hidden, weight and bias; student and teacher log-probs of
    the targets at temperature 1 (N,), detached), as `distillation.chunked_divergence` defines them."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if spec.tail not in ("bucket", "renormalize"):
        raise ValueError(f"unknown tail mode {spec.tail!r}")
    return LinearTopKDivergence.apply(
        hidden,
        weight,
        bias,
        targets,
        teacher,
        spec,
        float(temperature),
        int(chunk_size),
        float(scale),
        softcap,
    )
