"""Weights sharded by FSDP2 (`torch.distributed.fsdp.fully_shard`), as the SDPO core meets them.

Under FSDP2 every parameter is a DTensor holding this process's shard; a module's forward gathers
the full weights into a buffer of its own and, for the root module, keeps them there until the
backward has run. Three consequences for the core:

- the LM head's weight, taken outside the head's forward (the fused head), is the gathered full
  weight only between the root's forward and its backward; a sharded one is refused (`full_weight`);
- other weights (a teacher's) are put in place by exchanging the *shard values* (`exchanged`), never
  by `p.data = t`, which would replace the DTensor's data but not the shard storage the gathers read;
  the gathered buffers are dropped before and after, so that no forward reads a stale gather, and
  the root's buffer is gathered again afterwards with the live weights (a student's graph that ran
  before the exchange reads it in its backward);
- a head captured under other weights must be copied: the gathered buffer is refilled by the next
  forward.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from sdpo_exp.errors import SdpoError


def _fsdp_module_type() -> type | None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without distributed support
        return None
    return FSDPModule


def fsdp_modules(model: nn.Module) -> list[nn.Module]:
    """The FSDP2 units inside `model`, outermost (the root) first; empty when it is not sharded."""
    kind = _fsdp_module_type()
    if kind is None:
        return []
    return [m for m in model.modules() if isinstance(m, kind)]


def is_sharded(model: nn.Module) -> bool:
    return bool(fsdp_modules(model))


def is_dtensor(tensor: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return isinstance(tensor, DTensor)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor (a view of the storage FSDP gathers from), else the tensor."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


def full_weight(weight: torch.Tensor, what: str = "the LM head's weight") -> torch.Tensor:
    """`weight` unchanged when it is a full (gathered) tensor; a clear error when it is a shard."""
    if is_dtensor(weight):
        raise SdpoError(
            f"{what} is an FSDP shard here, not the gathered weight: the head must be applied between "
            "the model's forward and its backward (or with weights captured by LogitHead.frozen)"
        )
    return weight


@torch.no_grad()
def _exchange(params: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor]) -> None:
    for param, tensor in zip(params, tensors, strict=True):
        a, b = local_tensor(param), local_tensor(tensor)
        held = a.clone()
        a.copy_(b)
        b.copy_(held)


@contextmanager
def exchanged(
    model: nn.Module, params: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor]
) -> Iterator[None]:
    """The values of `tensors` in the shards of `params` (sharded alike) for the duration; `tensors`
    hold the live values meanwhile and get theirs back at the end. Exact: values are copied, never
    recomputed."""
    modules = fsdp_modules(model)
    if not modules:
        raise SdpoError("exchanged() is for a model sharded with FSDP2; swap plain parameters directly")
    for module in modules:
        module.reshard()
    _exchange(params, tensors)
    try:
        yield
    finally:
        _exchange(params, tensors)
        for module in modules:
            module.reshard()
        modules[0].unshard()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over the processes of the default group (unchanged with one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values
