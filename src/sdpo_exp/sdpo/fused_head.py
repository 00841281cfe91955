"""log p(target | hidden) through a Linear LM head, chunked, with an analytic backward.

Forward: for each chunk of positions, logits = transform(hidden @ W^T + b), upcast to float32
(float64 for a float64 model), keep only logsumexp and the target logit. Backward: recompute the
chunk's logits exactly as the forward did, turn them in place into softmax - onehot, scale by the
incoming gradient, and multiply back through the head. Nothing of size (positions, vocabulary)
outlives a chunk, and no autograd graph is built per chunk.

Mixed precision: the matmul runs in the dtype autocast would give it when the forward was called
(bf16 under `torch.autocast(dtype=bfloat16)` with float32 weights), and the backward uses that same
dtype whatever autocast state it runs under, so that the softmax it recomputes is the one whose
logsumexp the forward saved: the gradient is that of what the forward computed.

Gradient w.r.t. logits z of log p_t = z_t - logsumexp(z): g * (onehot_t - softmax(z)). The logit
transforms (a factor `scale`, Gemma 2's soft-capping `cap * tanh(z / cap)`) are chained in.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype logits are reduced in: float64 for a float64 head, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def matmul_dtype(device_type: str, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the head's matmul under the current autocast state (autocast never casts float64)."""
    if weight_dtype in _AUTOCAST_ELIGIBLE and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight_dtype


def head_logits(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float,
    softcap: float | None,
    acc: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(transformed logits in `acc`, tanh values when soft-capped); weight and bias already in the
    matmul dtype."""
    z = F.linear(h.to(weight.dtype), weight, bias).to(acc)
    if scale != 1.0:
        z.mul_(scale)
    if softcap is None:
        return z, None
    tanh = torch.tanh(z.div_(softcap))
    return tanh * softcap, tanh


def logsumexp_(z: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dimension, overwriting z (fewer passes and no copy of (n, V))."""
    peak = z.amax(dim=-1, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return peak.squeeze(-1) + z.sub_(peak).exp_().sum(dim=-1).log()


def cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)


def backprop_head(
    dz: torch.Tensor,
    tanh: torch.Tensor | None,
    h: torch.Tensor,
    w: torch.Tensor,
    scale: float,
    mm: torch.dtype,
    grads: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
    rows: slice,
) -> None:
    """Chain dLoss/d(transformed logits) `dz` (n, V) of chunk `rows` back through the soft-cap, the
    scale and the matmul, into the (grad_h, grad_w, grad_b) buffers; dz is overwritten."""
    grad_h, grad_w, grad_b = grads
    if tanh is not None:
        dz.mul_(1.0 - tanh.square_())
    if scale != 1.0:
        dz.mul_(scale)
    if grad_b is not None:
        grad_b += dz.sum(0)
    dz_mm = dz.to(mm)
    if grad_h is not None:
        grad_h[rows] = (dz_mm @ w).to(grad_h.dtype)
    if grad_w is not None:
        if mm == dz.dtype:
            grad_w.addmm_(dz.t(), h.to(dz.dtype))
        else:  # the matmul in its reduced dtype (as autograd would), summed over chunks in float32
            grad_w.add_(dz_mm.t() @ h.to(mm))


def grad_buffers(
    needs: tuple[bool, ...], hidden: torch.Tensor, weight: torch.Tensor, acc: torch.dtype
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Zeroed (grad_h, grad_w in `acc`, grad_b in `acc`) for the inputs that need a gradient."""
    need_h, need_w, need_b = needs[:3]
    grad_h = torch.empty_like(hidden) if need_h else None
    grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
    grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
    return grad_h, grad_w, grad_b


class LinearTokenLogProb(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_size: int,
        scale: float,
        softcap: float | None,
    ) -> torch.Tensor:
        device_type = hidden.device.type
        mm = matmul_dtype(device_type, weight.dtype)
        acc = acc_dtype(weight.dtype)
        n = hidden.shape[0]
        out = torch.empty(n, dtype=acc, device=hidden.device)
        lse = torch.empty(n, dtype=acc, device=hidden.device)
        with torch.autocast(device_type, enabled=False):
            w, b = weight.to(mm), cast(bias, mm)  # one cast for all chunks
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                z, _ = head_logits(hidden[start:stop], w, b, scale, softcap, acc)
                target_logit = z.gather(1, targets[start:stop, None]).squeeze(1)
                lse[start:stop] = logsumexp_(z)
                out[start:stop] = target_logit - lse[start:stop]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk_size, ctx.scale, ctx.softcap, ctx.matmul_dtype = chunk_size, scale, softcap, mm
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        acc, mm = lse.dtype, ctx.matmul_dtype
        grads = grad_buffers(ctx.needs_input_grad, hidden, weight, acc)
        grad_h, grad_w, grad_b = grads
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = weight.to(mm), cast(bias, mm)
            for start in range(0, hidden.shape[0], ctx.chunk_size):
                stop = min(start + ctx.chunk_size, hidden.shape[0])
                h = hidden[start:stop]
                z, tanh = head_logits(h, w, b, ctx.scale, ctx.softcap, acc)
                dz = z.sub_(lse[start:stop, None]).exp_()  # softmax, in place
                dz.scatter_add_(1, targets[start:stop, None], torch.full_like(dz[:, :1], -1.0))
                dz.mul_(-grad_out[start:stop, None].to(acc))  # g * (onehot - softmax)
                backprop_head(dz, tanh, h, w, ctx.scale, mm, grads, slice(start, stop))
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None


def linear_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_size: int,
    scale: float = 1.0,
    softcap: float | None = None,
) -> torch.Tensor:
    """(N,) log-probs of `targets`; differentiable w.r.t. hidden, weight and bias."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    return LinearTokenLogProb.apply(hidden, weight, bias, targets, int(chunk_size), float(scale), softcap)
