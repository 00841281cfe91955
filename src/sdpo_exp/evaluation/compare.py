"""One evaluation: the policy's replies against baselines' replies, judged for each profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdpo_exp.data.prompt_files import Prompt
from sdpo_exp.evaluation.pairs import judge_pairs
from sdpo_exp.evaluation.replies import reply_metrics
from sdpo_exp.users.judge import Judge


def compare_replies(
    judges: Mapping[str, Judge],
    prompts: Sequence[Prompt],
    replies: Sequence[str],
    baselines: Mapping[str, Mapping[str, Sequence[str]]],
    bootstrap_samples: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (profile, baseline): `baselines[profile][label]` are the replies to beat. Each row
    has the profile, the baseline's label, the win rate with its counts and errors, what the
    profile's rules say about the policy's replies (`reply/...`), and `outcomes`: the pair's outcome
    on each prompt ("win", "loss" or "tie"), in the order of `prompts`."""
    requests = [p.prompt for p in prompts]
    rows = []
    for profile, judge in judges.items():
        metrics = {f"reply/{k}": v for k, v in reply_metrics(profile, replies).items()}
        for label, baseline in baselines[profile].items():
            pairs = judge_pairs(judge, requests, replies, baseline)
            result = pairs.win_rate(bootstrap_samples, seed)
            row = {"profile": profile, "baseline": label, **result.to_json(), **metrics}
            row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            rows.append({**row, "outcomes": [o.value for o in pairs.outcomes]})
    return rows
