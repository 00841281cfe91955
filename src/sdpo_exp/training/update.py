"""The gradient of one optimiser step, accumulated over micro-batches and processes, exactly.

The step's loss is sum_b n_b / U, where n_b are the per-sequence numerators of every sequence of the
step (all micro-batches, all processes) and U the step's total of normaliser units (see
`sdpo_exp.sdpo.losses`). U is counted from the batches' masks and summed across processes before
the first backward; each micro-batch then backpropagates its own sum of numerators divided by U
(times the number of processes, which DDP and FSDP average the gradients over). The result does not
depend on how the step's sequences are split into micro-batches or processes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from torch import nn

from sdpo_exp.sdpo.batching import SDPOBatch
from sdpo_exp.training.distributed import gather_objects
from sdpo_exp.training.metrics import MetricSums

log = logging.getLogger(__name__)


def step_units(
    accelerator: Any, objective: Any, batches: Sequence[SDPOBatch], counted: Sequence[bool]
) -> float:
    """U: the normaliser units of the counted batches of every process."""
    local = sum(objective.loss_units(b) for b, keep in zip(batches, counted, strict=True) if keep)
    return float(sum(gather_objects(accelerator, float(local))))


def accumulate_gradients(
    accelerator: Any,
    model: nn.Module,
    objective: Any,
    batches: Sequence[SDPOBatch],
    counted: Sequence[bool],
) -> MetricSums:
    """Forward and backward every micro-batch of this process for one optimiser step.

    `counted[i]` False marks a filler micro-batch: it runs (every process must do the same number of
    passes, for the collectives inside DDP/FSDP) with weight zero and is left out of the metrics.
    Gradients are synchronised once, on the last micro-batch. Returns this process's metric sums.
    """
    if not batches:
        raise ValueError("a step needs at least one micro-batch")
    units = step_units(accelerator, objective, batches, counted)
    if units == 0:
        log.warning("This step has no loss tokens (every completion ignored): its gradient is zero")
    scale = accelerator.num_processes / max(units, 1.0)
    sums = MetricSums()
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            with accelerator.autocast():
                out = objective(batch)
            accelerator.backward(out.loss_sum * (scale if counted[i] else 0.0))
        if not counted[i]:
            continue
        sums.add(out.metrics, sequences=len(batch))
        sums.count("num_interactions", len(batch))
        sums.count("num_completion_tokens", batch.num_completion_tokens)
        tokens = int(batch.student_attention_mask.sum()) + int(batch.teacher_attention_mask.sum())
        sums.count("num_input_tokens", tokens)
    return sums
