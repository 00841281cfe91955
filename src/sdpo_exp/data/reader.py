"""Read an interaction file: every good record used, every bad line skipped and counted by reason."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sdpo_exp.data.records import BadRecord, parse_record
from sdpo_exp.errors import DataError
from sdpo_exp.interaction import Interaction

log = logging.getLogger(__name__)

# How many examples of each skip reason are logged with their line number.
EXAMPLES_PER_REASON = 3


@dataclass
class ReadResult:
    path: Path
    interactions: list[Interaction]
    lines: int = 0
    skipped: Counter = field(default_factory=Counter)
    # Valid records beyond `max_records`, not used (counted, not silently ignored).
    unused_valid: int = 0

    def summary(self, prefix: str) -> dict[str, int]:
        """Flat metrics: `<prefix>/records`, `<prefix>/lines`, `<prefix>/skipped/<reason>`."""
        out = {f"{prefix}/records": len(self.interactions), f"{prefix}/lines": self.lines}
        if self.unused_valid:
            out[f"{prefix}/unused_beyond_max_records"] = self.unused_valid
        out.update({f"{prefix}/skipped/{reason}": n for reason, n in sorted(self.skipped.items())})
        return out


def read_interactions(
    path: str | Path, max_total_chars: int | None = None, max_records: int | None = None
) -> ReadResult:
    """Parse a JSON-lines interaction file. A file with no valid record is a DataError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(
            f"{path.resolve()} is a directory, not an interaction file (one JSON object per line)"
        )
    if not path.is_file():
        raise DataError(f"interaction file not found: {path.resolve()}")
    result = ReadResult(path=path, interactions=[])
    examples: Counter = Counter()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            result.lines = number
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _skip(result, examples, path, number, "invalid_utf8", str(exc))
                continue
            if not line.strip():
                _skip(result, examples, path, number, "blank_line", "empty line")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                _skip(result, examples, path, number, "invalid_json", str(exc))
                continue
            try:
                interaction = parse_record(obj, max_total_chars)
            except BadRecord as bad:
                _skip(result, examples, path, number, bad.reason, bad.detail)
                continue
            if max_records is not None and len(result.interactions) >= max_records:
                result.unused_valid += 1
                continue
            result.interactions.append(interaction)
    skipped = sum(result.skipped.values())
    if not result.interactions:
        reasons = ", ".join(f"{r} {n}" for r, n in result.skipped.most_common()) or "the file is empty"
        raise DataError(f"no valid interaction record in {path} ({result.lines} lines; {reasons})")
    log.info(
        "Read %d interactions from %s (%d lines, %d skipped%s%s)",
        len(result.interactions),
        path,
        result.lines,
        skipped,
        ": " + ", ".join(f"{r} {n}" for r, n in result.skipped.most_common()) if skipped else "",
        f"; {result.unused_valid} valid records beyond max_records not used" if result.unused_valid else "",
    )
    return result


def _skip(result: ReadResult, examples: Counter, path: Path, number: int, reason: str, detail: str) -> None:
    result.skipped[reason] += 1
    if examples[reason] < EXAMPLES_PER_REASON:
        examples[reason] += 1
        log.warning("%s:%d skipped (%s): %s", path, number, reason, detail[:200])
