"""Judging a policy's replies against a baseline's, in both orders, into a win rate."""

from __future__ import annotations

from collections.abc import Sequence

from sdpo_exp.evaluation.winrate import WinRate, win_rate_from_replies
from sdpo_exp.users.judge import Judge


def judge_win_rate(
    judge: Judge,
    requests: Sequence[str],
    policy: Sequence[str],
    baseline: Sequence[str],
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> WinRate:
    """Each pair judged with the policy as A, then as B (paper, Appendix D.3)."""
    if not len(requests) == len(policy) == len(baseline):
        raise ValueError("requests, policy and baseline replies must have one entry per prompt")
    first = judge.compare(requests, policy, baseline)
    second = judge.compare(requests, baseline, policy)
    return win_rate_from_replies(first, second, bootstrap_samples, seed)
