"""Evaluation on the held-out interactions: the loss and the signal metrics, without gradients."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from sdpo_exp.interaction import Interaction
from sdpo_exp.training.metrics import MetricSums

log = logging.getLogger(__name__)


def eval_batches(num_items: int, batch_size: int, rank: int, processes: int) -> list[list[int]]:
    """This process's batches: a strided shard, cut into batches; every process gets the same number of
    batches (an empty list is a filler batch that runs but is not counted), so collective operations
    inside the forward (FSDP) stay in step."""
    shard = list(range(rank, num_items, processes))
    per_process = math.ceil(math.ceil(num_items / processes) / batch_size)
    batches = [shard[i * batch_size : (i + 1) * batch_size] for i in range(per_process)]
    return batches


def evaluate(
    objective: Any,
    builder: Any,
    interactions: list[Interaction],
    accelerator: Any,
    batch_size: int,
    model: torch.nn.Module,
) -> dict[str, float]:
    """`eval/<metric>` over all of `interactions`, combined across processes."""
    sums = MetricSums()
    was_training = model.training
    model.eval()
    try:
        for indices in eval_batches(
            len(interactions), batch_size, accelerator.process_index, accelerator.num_processes
        ):
            chosen = indices or [0]
            batch = builder.collate([builder.encode_one(interactions[i]) for i in chosen]).to(
                accelerator.device
            )
            with torch.no_grad(), accelerator.autocast():
                out = objective(batch)
            if not indices:
                continue
            sums.add(out.metrics, sequences=len(indices))
            sums.count("num_interactions", len(indices))
    finally:
        model.train(was_training)
    return {f"eval/{key}": value for key, value in sums.reduce(accelerator).items()}
