"""Judging a policy's replies against a baseline's, in both orders, into per-prompt outcomes and a
win rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sdpo_exp.evaluation.winrate import Outcome, Verdict, WinRate, pair_outcome, parse_verdict, win_rate
from sdpo_exp.users.judge import Judge


@dataclass(frozen=True)
class JudgedPairs:
    """The judge's raw replies to both orders of every pair, and each pair's outcome for the policy."""

    policy_as_a: list[str | None]
    policy_as_b: list[str | None]
    outcomes: list[Outcome]
    invalid: int  # invalid verdicts (two per pair at most)

    def win_rate(self, bootstrap_samples: int = 1000, seed: int = 0) -> WinRate:
        return win_rate(self.outcomes, self.invalid, bootstrap_samples, seed)


def judge_pairs(
    judge: Judge, requests: Sequence[str], policy: Sequence[str], baseline: Sequence[str]
) -> JudgedPairs:
    """Each pair judged with the policy as A, then as B (paper, Appendix D.3)."""
    if not len(requests) == len(policy) == len(baseline):
        raise ValueError("requests, policy and baseline replies must have one entry per prompt")
    first = judge.compare(requests, policy, baseline)
    second = judge.compare(requests, baseline, policy)
    if len(first) != len(requests) or len(second) != len(requests):
        raise ValueError("the judge must give one verdict per pair")
    verdicts_a, verdicts_b = [parse_verdict(r) for r in first], [parse_verdict(r) for r in second]
    invalid = sum(v == Verdict.INVALID for v in (*verdicts_a, *verdicts_b))
    outcomes = [pair_outcome(a, b) for a, b in zip(verdicts_a, verdicts_b, strict=True)]
    return JudgedPairs(list(first), list(second), outcomes, invalid)


def judge_win_rate(
    judge: Judge,
    requests: Sequence[str],
    policy: Sequence[str],
    baseline: Sequence[str],
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> WinRate:
    return judge_pairs(judge, requests, policy, baseline).win_rate(bootstrap_samples, seed)
