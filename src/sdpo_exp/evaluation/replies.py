"""The replies a policy gives to the held-out prompts (greedy), cached in a run directory, and what
a profile's rules say about them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.data.prompt_files import Prompt
from sdpo_exp.users import rules


def greedy(max_new_tokens: int, batch_size: int | None = None) -> dict[str, Any]:
    """Greedy decoding settings; `batch_size` (None: the generator's own) for the hf backend."""
    out: dict[str, Any] = {
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_new_tokens": int(max_new_tokens),
    }
    if batch_size is not None:
        out["batch_size"] = int(batch_size)
    return out


def policy_replies(
    generator: Any,
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    system: str | None = None,
    batch_size: int | None = None,
) -> list[str]:
    """Greedy replies of the generator's policy (optionally with `system` as the system prompt)."""
    samples = generator.generate([p.messages(system) for p in prompts], greedy(max_new_tokens, batch_size))
    return [s.text for s in samples]


def save_replies(path: Path, prompts: Sequence[Prompt], replies: Sequence[str]) -> None:
    with AtomicJsonlWriter(path) as out:
        for prompt, reply in zip(prompts, replies, strict=True):
            out.write({"id": prompt.id, "prompt": prompt.prompt, "reply": reply})


def load_replies(path: Path, prompts: Sequence[Prompt]) -> list[str] | None:
    """The cached replies to exactly these prompts, or None (no file, or other prompts)."""
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [r.get("id") for r in rows] != [p.id for p in prompts]:
        return None
    return [str(r["reply"]) for r in rows]


def reply_metrics(profile: str, replies: Sequence[str]) -> dict[str, float]:
    """Mean length in words, the share of replies that open with an apology or refusal and of replies
    that repeat themselves (signs that a policy games the user instead of helping), and, for a profile
    with rules, the share of replies breaking each rule."""
    n = max(len(replies), 1)
    out = {
        "mean_words": sum(len(rules.words(r)) for r in replies) / n,
        "share_apology": sum(rules.opens_with_apology(r) for r in replies) / n,
        "share_repetitive": sum(rules.repetitive(r) for r in replies) / n,
    }
    if profile in rules.PROFILE_RULES:
        broken = [rules.broken_rules(profile, r) for r in replies]
        for rule in rules.rules_for(profile):
            out[f"share_{rule.name}"] = sum(rule in b for b in broken) / n
        out["share_any_rule"] = sum(bool(b) for b in broken) / n
    return out
