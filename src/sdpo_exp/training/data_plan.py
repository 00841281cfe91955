"""Which examples each optimiser step uses, on which process and in which micro-batch.

The order is a function of (seed, epoch) only, so a resumed run needs nothing but the step number to
continue with exactly the same data. Step k of an epoch takes the k-th slice of `global_batch`
examples of that epoch's permutation; the last step of an epoch takes what is left (no example is
dropped or repeated). A step's examples are dealt to slots (micro-batch m, process p) in the order
m * processes + p, `per_device` each; a slot left empty (only in a short last step) still runs, with
weight zero, so that every process does the same number of forward and backward passes. How the
micro-batches are weighted is not the plan's business: the learner normalises the step as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdpo_exp.training.geometry import BatchGeometry


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of example indices for `epoch` (PCG64 seeded by (seed, epoch))."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)]).permutation(num_items)


@dataclass
class DataPlan:
    num_items: int
    geometry: BatchGeometry
    seed: int

    def __post_init__(self) -> None:
        if self.num_items < 1:
            raise ValueError("a data plan needs at least one example")
        self._cache: tuple[int, np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_items / self.geometry.global_batch)

    def total_steps(self, epochs: int, max_steps: int | None) -> int:
        """`max_steps` when set (None or -1: no limit, `epochs` decide)."""
        if max_steps is None or int(max_steps) == -1:
            return int(epochs) * self.steps_per_epoch
        return int(max_steps)

    def _order(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, epoch_order(self.num_items, self.seed, epoch))
        return self._cache[1]

    def step_items(self, step: int) -> list[int]:
        """The example indices of optimiser step `step` (0-based), across all processes."""
        epoch, k = divmod(step, self.steps_per_epoch)
        g = self.geometry.global_batch
        return [int(i) for i in self._order(epoch)[k * g : (k + 1) * g]]

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """This process's `accumulation` micro-batches of example indices for `step` (empty: filler)."""
        items = self.step_items(step)
        geo = self.geometry
        slots = (m * geo.processes + rank for m in range(geo.accumulation))
        return [items[slot * geo.per_device : (slot + 1) * geo.per_device] for slot in slots]

    def epoch_of(self, step: int) -> float:
        """Fractional epoch reached after `step` optimiser steps."""
        return step / self.steps_per_epoch
