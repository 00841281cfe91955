"""`report.md`: the settings, the win-rate table, the profile's rule metrics over time, and example
interactions before and after training."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pct(value: Any) -> str:
    """A rate as a percentage with one decimal; n/a for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * float(value):.1f}%"


def _cell(text: Any, limit: int = 300) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def winrate_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [
        "| interactions | profile | baseline | win rate | SE | bootstrap SE | wins / losses / ties | invalid verdicts | coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['interactions']} | {r['profile']} | {r['baseline']} | {pct(r['win_rate'])} | {pct(r['se'])} | "
            f"{pct(r['bootstrap_se'])} | {r['wins']} / {r['losses']} / {r['ties']} | {r['invalid']} | {pct(r['coverage'])} |"
        )
    return out


def rule_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The policy's replies at each evaluation, as the profiles' rules see them (one row per
    evaluation and profile, baseline rows folded)."""
    seen, kept = set(), []
    for r in rows:
        if (r["interactions"], r["profile"]) not in seen:
            seen.add((r["interactions"], r["profile"]))
            kept.append(r)
    keys = sorted({k for r in kept for k in r if k.startswith("reply/")})
    if not keys:
        return []
    names = [k.removeprefix("reply/") for k in keys]
    out = ["| interactions | profile | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in kept:
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append("" if v is None else f"{v:.1f}" if k.endswith("mean_words") else pct(v))
        out.append(f"| {r['interactions']} | {r['profile']} | " + " | ".join(cells) + " |")
    return out


def examples_table(examples: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["| profile | prompt | reply | follow-up |", "|---|---|---|---|"]
    for e in examples:
        out.append(
            f"| {e['profile']} | {_cell(e['prompt'], 120)} | {_cell(e['reply'])} | {_cell(e['followup'], 160)} |"
        )
    return out


def write_report(
    path: Path,
    title: str,
    intro: str,
    settings: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    before: Sequence[Mapping[str, Any]] = (),
    after: Sequence[Mapping[str, Any]] = (),
    plot: str | None = None,
    oracle: Sequence[Mapping[str, Any]] = (),
) -> Path:
    lines = [f"# {title}", "", intro, "", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in settings.items()]
    if plot:
        lines += ["", f"![win rate]({plot})"]
    lines += ["", "## Win rates", "", *winrate_table(rows)]
    if oracle:
        lines += ["", "## The in-context oracle", "",
                  "The untrained model told the profile in its system prompt, against the base model on the same "
                  "held-out prompts: a reference for what the policy could reach.", "", *winrate_table(oracle)]  # fmt: skip
    rules = rule_table(rows)
    if rules:
        lines += ["", "## The replies, as the profile's rules see them", "",
                  "Share of the held-out greedy replies that break each rule of the profile, and their mean length.",
                  "", *rules]  # fmt: skip
    if before:
        lines += ["", "## Interactions at the start of training", "", *examples_table(before)]
    if after:
        lines += ["", "## Interactions at the end of training", "", *examples_table(after)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
