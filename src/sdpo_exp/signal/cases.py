"""Signal-analysis cases: a prompt, a relevant follow-up, an unrelated one, optionally a fixed completion.

The cases file is JSON: a list of case objects, or an object with a ``cases`` list. A case has

- ``id``: a unique non-empty string,
- ``kind``: a non-empty label such as ``reinforce`` (the follow-up approves of the answer) or
  ``constrain`` (the follow-up asks for something different),
- ``prompt``: a string (one user message) or a list of ``{"role", "content"}`` messages ending with a
  user message,
- ``followup``: the relevant next user message, ``unrelated``: one that has nothing to do with the answer,
- ``completion`` (optional): a fixed response to score instead of sampling one.

Malformed cases are logged by id with the reason and skipped; a file without any valid case is a
:class:`~sdpo_exp.errors.DataError` that names the file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpo_exp.errors import DataError
from sdpo_exp.interaction import ROLES

log = logging.getLogger(__name__)

REQUIRED = ("id", "kind", "prompt", "followup", "unrelated")
OPTIONAL = ("completion", "note")


@dataclass(frozen=True)
class SignalCase:
    id: str
    kind: str
    messages: list[dict[str, str]]
    followup: str
    unrelated: str
    completion: str | None = None
    note: str | None = None


class CaseError(ValueError):
    """A case is malformed; ``reason`` is a short snake_case label used for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _nonempty_str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise CaseError(f"bad_{key}", f"'{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise CaseError(f"empty_{key}", f"'{key}' is empty")
    return value


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise CaseError("empty_prompt", "'prompt' is empty")
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise CaseError("bad_prompt", "'prompt' must be a string or a non-empty list of messages")
    messages = []
    for index, message in enumerate(prompt):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise CaseError("bad_prompt", f"prompt message {index} must have exactly 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise CaseError("bad_prompt", f"prompt message {index} has unknown role {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise CaseError("bad_prompt", f"prompt message {index} has empty or non-string content")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise CaseError("prompt_not_ending_with_user", "the last prompt message must be a user message")
    return messages


def parse_case(raw: Any) -> SignalCase:
    """One case from its JSON object; raises :class:`CaseError`."""
    if not isinstance(raw, dict):
        raise CaseError("not_an_object", f"a case must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise CaseError("unknown_field", f"unknown field(s) {unknown}")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise CaseError("missing_field", f"missing field(s) {missing}")
    completion = raw.get("completion")
    if completion is not None:
        completion = _nonempty_str(raw, "completion")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise CaseError("bad_note", "'note' must be a string")
    return SignalCase(
        id=_nonempty_str(raw, "id"),
        kind=_nonempty_str(raw, "kind"),
        messages=_messages(raw["prompt"]),
        followup=_nonempty_str(raw, "followup"),
        unrelated=_nonempty_str(raw, "unrelated"),
        completion=completion,
        note=note,
    )


def _case_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"].strip():
        return raw["id"]
    return f"#{index}"


def load_cases(path: str | Path) -> tuple[list[SignalCase], Counter[str]]:
    """The valid cases of a file, in file order, and the counts of skipped cases by reason."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"signal cases file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read signal cases file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"signal cases file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "cases" in data:
        data = data["cases"]
    if not isinstance(data, list):
        raise DataError(f"signal cases file {path} must hold a list of cases (or an object with 'cases')")

    cases: list[SignalCase] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    for index, raw in enumerate(data):
        label = _case_label(raw, index)
        try:
            case = parse_case(raw)
            if case.id in seen:
                raise CaseError("duplicate_id", "another case has the same id")
        except CaseError as exc:
            skipped[exc.reason] += 1
            log.warning("Skipping signal case %s in %s: %s", label, path, exc)
            continue
        seen.add(case.id)
        cases.append(case)
    if not cases:
        detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())) or "the list is empty"
        raise DataError(f"signal cases file {path} has no valid case ({detail})")
    if skipped:
        log.warning("Signal cases: %d valid, %d skipped %s", len(cases), sum(skipped.values()), dict(skipped))
    return cases, skipped
