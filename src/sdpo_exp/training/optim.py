"""Optimiser (AdamW, or bitsandbytes' 8-bit AdamW on a GPU) and learning-rate schedule with warm-up."""

from __future__ import annotations

import logging
import math
from enum import Enum
from typing import Any

import torch

from sdpo_exp.config.schemas.trainer import Optimizer, Scheduler, Strategy
from sdpo_exp.errors import ConfigError
from sdpo_exp.training.strategy import strategy_of

log = logging.getLogger(__name__)


def _enum(value: Any, enum_type: type[Enum]) -> Any:
    return value if isinstance(value, enum_type) else enum_type(value)


def check_optimizer_available(trainer: Any, device: torch.device) -> None:
    """Fail before any model is loaded when the optimiser cannot run here."""
    if _enum(trainer.optimizer, Optimizer) != Optimizer.adamw_8bit:
        return
    if strategy_of(trainer) == Strategy.fsdp:
        raise ConfigError(
            "trainer.optimizer=adamw_8bit with trainer.strategy=fsdp: bitsandbytes' 8-bit AdamW updates plain "
            "tensors, not FSDP2's sharded DTensor parameters; use trainer.optimizer=adamw (its float32 state is "
            "sharded across the GPUs too)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "trainer.optimizer=adamw_8bit needs bitsandbytes (pip install -e '.[gpu]') and a CUDA GPU; "
            "use trainer.optimizer=adamw otherwise"
        ) from None
    if device.type != "cuda":
        raise ConfigError(
            f"trainer.optimizer=adamw_8bit runs on a CUDA GPU only, and this run is on {device.type}; "
            "use trainer.optimizer=adamw"
        )


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay on matrices only; biases and norm weights (1-D) are not decayed."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: torch.nn.Module, trainer: Any, device: torch.device) -> torch.optim.Optimizer:
    check_optimizer_available(trainer, device)
    groups = parameter_groups(model, float(trainer.weight_decay))
    if not any(g["params"] for g in groups):
        raise ConfigError("the model has no trainable parameters")
    kwargs = {
        "lr": float(trainer.lr),
        "betas": (float(trainer.adam_beta1), float(trainer.adam_beta2)),
        "eps": float(trainer.adam_eps),
    }
    if _enum(trainer.optimizer, Optimizer) == Optimizer.adamw_8bit:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * float(warmup_ratio))


def lr_factor(kind: Scheduler, step: int, total_steps: int, warmup: int) -> float:
    """The multiplier of the base learning rate used for optimiser step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == Scheduler.constant:
        return 1.0
    decay_steps = max(total_steps - warmup, 1)
    progress = min(max(step - warmup, 0) / decay_steps, 1.0)
    if kind == Scheduler.linear:
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, trainer: Any, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    kind = _enum(trainer.lr_scheduler, Scheduler)
    warmup = warmup_steps(total_steps, trainer.warmup_ratio)

    # A plain function: LambdaLR's state_dict then stores only its counters, so the schedule's
    # shape always comes from the current config.
    def factor(step: int) -> float:
        return lr_factor(kind, step, total_steps, warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
