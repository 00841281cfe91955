"""Accumulating loss metrics over micro-batches and processes.

A batch's metrics are means over that batch; they are combined into means over all batches with
the weight that makes them pooled means: the EOS advantage by the number of EOS tokens, the other token-level means by the number
of completion tokens. Counts (`num_*`, truncated completions, dropped context messages) are summed,
and so are the loss's numerator and units: `loss` is their quotient, the exact step-wide loss.
Spreads such as `adv_std` are combined the same way, which approximates the pooled value.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sdpo_exp.training.distributed import gather_objects

COUNT_KEYS = {"completions_truncated", "context_messages_dropped", "loss_sum", "loss_units"}


def _is_count(key: str) -> bool:
    return key.startswith("num_") or key in COUNT_KEYS


def _weight(key: str, values: dict[str, float], sequences: float) -> float:
    if key == "adv_eos_mean":
        return values.get("num_eos_tokens", sequences)
    return values.get("num_tokens", sequences)


class MetricSums:
    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)

    def add(self, values: dict[str, Any], sequences: int) -> None:
        """One batch's metrics (`sequences` examples)."""
        plain = {k: float(v.item() if hasattr(v, "item") else v) for k, v in values.items()}
        for key, value in plain.items():
            if _is_count(key):
                self.counts[key] += value
            else:
                weight = _weight(key, plain, float(sequences))
                self.sums[key] += value * weight
                self.weights[key] += weight

    def count(self, key: str, value: float) -> None:
        self.counts[key] += float(value)

    def state(self) -> tuple[dict, dict, dict]:
        return dict(self.sums), dict(self.weights), dict(self.counts)

    def reduce(self, accelerator: Any) -> dict[str, float]:
        """The combined metrics over every process."""
        total = MetricSums()
        for sums, weights, counts in gather_objects(accelerator, self.state()):
            for key, value in sums.items():
                total.sums[key] += value
                total.weights[key] += weights[key]
            for key, value in counts.items():
                total.counts[key] += value
        out = {key: total.sums[key] / total.weights[key] for key in total.sums if total.weights[key] > 0}
        out.update({k: int(v) if float(v).is_integer() else v for k, v in total.counts.items()})
        if "loss_sum" in out:
            out["loss"] = float(out.pop("loss_sum")) / max(float(out.pop("loss_units", 0.0)), 1.0)
        return out
