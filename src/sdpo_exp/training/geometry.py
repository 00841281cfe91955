"""Batch geometry: per-device batch x gradient accumulation x processes = the global batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdpo_exp.errors import ConfigError


@dataclass(frozen=True)
class BatchGeometry:
    per_device: int
    accumulation: int
    processes: int

    @property
    def global_batch(self) -> int:
        return self.per_device * self.accumulation * self.processes

    def describe(self) -> str:
        return (
            f"global batch {self.global_batch} = {self.per_device} per device x {self.accumulation} "
            f"accumulation steps x {self.processes} process{'es' if self.processes > 1 else ''}"
        )


def batch_geometry(trainer: Any, processes: int) -> BatchGeometry:
    """From `trainer.per_device_batch_size` and either `trainer.global_batch_size` (accumulation is
    derived from it) or `trainer.grad_accum_steps`."""
    per_device = int(trainer.per_device_batch_size)
    if per_device < 1:
        raise ConfigError(f"trainer.per_device_batch_size must be >= 1, got {per_device}")
    if trainer.global_batch_size is None:
        accumulation = int(trainer.grad_accum_steps)
        if accumulation < 1:
            raise ConfigError(f"trainer.grad_accum_steps must be >= 1, got {accumulation}")
        return BatchGeometry(per_device, accumulation, processes)
    global_batch = int(trainer.global_batch_size)
    per_step = per_device * processes
    if global_batch < per_step or global_batch % per_step:
        raise ConfigError(
            f"trainer.global_batch_size={global_batch} is not a multiple of per_device_batch_size "
            f"({per_device}) x processes ({processes}) = {per_step}; change one of them"
        )
    return BatchGeometry(per_device, global_batch // per_step, processes)
