"""Micro-batches cut by a token budget (`trainer.max_tokens_per_micro_batch`) instead of a row count.

A step's rows on this process are sorted by length, longest first, and dealt greedily into
micro-batches whose token count stays within the budget: with packing the sum of the rows' student
and teacher tokens, without it the padded size (rows x (longest student + longest teacher row)).
A row over the budget on its own gets a micro-batch of its own. Long rows then no longer set the
memory of every micro-batch, and rows of similar length share one (less padding when not packed).
The step's gradient does not change: the learner normalises a step as a whole, whatever its split
(`update`). Every process runs the same number of micro-batches (the largest count, the others
filled with weight-zero passes), as DDP's and FSDP's collectives need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def row_tokens(encoded: Mapping[str, Any]) -> tuple[int, int]:
    """(student tokens, teacher tokens) of one encoded row (context + completion each)."""
    completion = len(encoded["completion_ids"])
    return len(encoded["student_ids"]) + completion, len(encoded["teacher_ids"]) + completion


def micro_batch_tokens(rows: Sequence[tuple[int, int]], packed: bool) -> int:
    """The tokens the passes of a micro-batch of these rows run on (padding included when not packed)."""
    if not rows:
        return 0
    if packed:
        return sum(s + t for s, t in rows)
    return len(rows) * (max(s for s, _ in rows) + max(t for _, t in rows))


def budget_groups(encoded: Sequence[Mapping[str, Any]], budget: int, packed: bool) -> list[list[int]]:
    """Indices of `encoded` grouped into micro-batches of at most `budget` tokens, longest rows first."""
    if budget < 1:
        raise ValueError(f"trainer.max_tokens_per_micro_batch must be positive, got {budget}")
    sizes = [row_tokens(e) for e in encoded]
    order = sorted(range(len(sizes)), key=lambda i: -(sizes[i][0] + sizes[i][1]))
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and micro_batch_tokens([sizes[j] for j in [*current, i]], packed) > budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def rows_over_budget(encoded: Sequence[Mapping[str, Any]], budget: int, packed: bool) -> int:
    """How many rows alone exceed the budget (each then runs as a micro-batch of its own)."""
    return sum(micro_batch_tokens([row_tokens(e)], packed) > budget for e in encoded)
