"""Before training: which interactions the batch builder can use (tokenised once, counted by reason).

The check runs `BatchBuilder.encode_one` on every interaction (split across processes when there
are several); the unusable ones (hindsight or token-limit reasons such as `prompt_too_long`) are
left out of the run and counted, so that every step's batch is full and the number of steps is
known in advance. The encodings themselves are not kept; each batch is tokenised again when used.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.hindsight import SkipInteraction
from sdpo_exp.training.distributed import gather_objects

log = logging.getLogger(__name__)


@dataclass
class UsableSet:
    interactions: list[Interaction]
    skipped: Counter = field(default_factory=Counter)
    completion_tokens: int = 0

    def summary(self, prefix: str) -> dict[str, int]:
        out = {
            f"{prefix}/usable": len(self.interactions),
            f"{prefix}/completion_tokens": self.completion_tokens,
        }
        out.update({f"{prefix}/skipped/{reason}": n for reason, n in sorted(self.skipped.items())})
        return out


def usable_interactions(
    builder: Any, interactions: list[Interaction], accelerator: Any, name: str
) -> UsableSet:
    rank, world = accelerator.process_index, accelerator.num_processes
    kept: list[int] = []
    skipped: Counter = Counter()
    tokens = 0
    for index in range(rank, len(interactions), world):
        try:
            encoded = builder.encode_one(interactions[index])
        except SkipInteraction as exc:
            skipped[exc.reason] += 1
            continue
        kept.append(index)
        tokens += len(encoded["completion_ids"])
    parts = gather_objects(accelerator, (kept, dict(skipped), tokens))
    all_kept = sorted(i for part in parts for i in part[0])
    total_skipped: Counter = Counter()
    for part in parts:
        total_skipped.update(part[1])
    result = UsableSet([interactions[i] for i in all_kept], total_skipped, sum(p[2] for p in parts))
    if total_skipped:
        log.warning(
            "%s: %d of %d interactions cannot be used and are left out: %s",
            name,
            sum(total_skipped.values()),
            len(interactions),
            ", ".join(f"{r} {n}" for r, n in total_skipped.most_common()),
        )
    return result
