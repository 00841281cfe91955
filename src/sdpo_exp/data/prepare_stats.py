"""What `task=prepare` read, kept, wrote and dropped (by reason): `prepare_stats.json`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PrepareStats:
    source: str
    hf_id: str
    hf_config: str | None
    revision: str | None
    local_path: str | None
    rows_read: Counter = field(default_factory=Counter)  # per split
    written: Counter = field(default_factory=Counter)  # per output name (train, eval, validation, ...)
    dropped: Counter = field(default_factory=Counter)  # "<level>/<reason>" -> count
    counts: Counter = field(default_factory=Counter)  # other tallies (conversations_kept, ...)
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, level: str, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[f"{level}/{reason}"] += n

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "hf_id": self.hf_id,
            "hf_config": self.hf_config,
            "revision": self.revision,
            "local_path": self.local_path,
            "rows_read": sum(self.rows_read.values()),
            "rows_read_per_split": dict(self.rows_read),
            **{k: self.counts[k] for k in sorted(self.counts)},
            "written": dict(self.written),
            "dropped": dict(sorted(self.dropped.items())),
            "outputs": self.outputs,
            "notes": self.notes,
        }

    def metrics(self) -> dict[str, float]:
        """Flat numbers for summary.json."""
        out: dict[str, float] = {"rows_read": float(sum(self.rows_read.values()))}
        out.update({k: float(v) for k, v in self.counts.items()})
        out.update({f"written/{k}": float(v) for k, v in self.written.items()})
        out.update({f"dropped/{k}": float(v) for k, v in self.dropped.items()})
        return out
