"""Win rates from pairwise verdicts, judged twice with the positions swapped (paper, Appendix D.3).

A judge sees the policy's response and the baseline's, once with the policy as A and once as B. A
verdict is the judge's reply parsed strictly: after trimming it must be exactly `A`, `B` or `C`
(C: tie); anything else is an invalid verdict, counted, and scored as a tie. The two verdicts of a
pair count when they agree (the policy wins both times, or loses both times); any disagreement is a
tie. Win rate = wins / (wins + losses), ties left out; its analytic standard error is
sqrt(p (1 - p) / (wins + losses)); the bootstrap SE resamples the pairs (seeded); coverage is
1 - ties / pairs, the share of pairs that were decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np


class Verdict(Enum):
    A = "A"
    B = "B"
    TIE = "C"
    INVALID = "invalid"


class Outcome(Enum):
    WIN = "win"
    LOSS = "loss"
    TIE = "tie"


def parse_verdict(reply: str | None) -> Verdict:
    """A, B or C (tie) when the trimmed reply is exactly that character; otherwise INVALID."""
    text = (reply or "").strip()
    for verdict in (Verdict.A, Verdict.B, Verdict.TIE):
        if text == verdict.value:
            return verdict
    return Verdict.INVALID


def _as_policy(verdict: Verdict, policy_is_a: bool) -> Outcome:
    if verdict in (Verdict.TIE, Verdict.INVALID):
        return Outcome.TIE
    policy_won = (verdict == Verdict.A) == policy_is_a
    return Outcome.WIN if policy_won else Outcome.LOSS


def pair_outcome(policy_as_a: Verdict, policy_as_b: Verdict) -> Outcome:
    """The outcome for the policy of one pair: the first verdict with the policy shown as A, the
    second with the policy shown as B. Agreeing verdicts count; anything else is a tie."""
    first, second = _as_policy(policy_as_a, True), _as_policy(policy_as_b, False)
    return first if first == second else Outcome.TIE


@dataclass(frozen=True)
class WinRate:
    pairs: int
    wins: int
    losses: int
    ties: int
    invalid: int  # invalid verdicts (two per pair at most), each scored as a tie
    win_rate: float  # wins / (wins + losses); NaN when no pair was decided
    se: float  # analytic: sqrt(p (1 - p) / (wins + losses))
    bootstrap_se: float
    coverage: float  # 1 - ties / pairs

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def rates(wins: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """wins / (wins + losses), elementwise; NaN where nothing was decided."""
    decided = wins + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(decided > 0, wins / np.maximum(decided, 1), np.nan)


def win_rate(
    outcomes: Sequence[Outcome], invalid: int = 0, bootstrap_samples: int = 1000, seed: int = 0
) -> WinRate:
    """Aggregate the pairs' outcomes (see `pair_outcome`); `invalid` is the number of invalid verdicts."""
    n = len(outcomes)
    is_win = np.array([o == Outcome.WIN for o in outcomes], dtype=np.int64)
    is_loss = np.array([o == Outcome.LOSS for o in outcomes], dtype=np.int64)
    wins, losses = int(is_win.sum()), int(is_loss.sum())
    ties = n - wins - losses
    decided = wins + losses
    p = wins / decided if decided else math.nan
    se = math.sqrt(p * (1 - p) / decided) if decided else math.nan
    boot = math.nan
    if n and decided and bootstrap_samples > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(bootstrap_samples, n))
        resampled = rates(is_win[idx].sum(1), is_loss[idx].sum(1))
        resampled = resampled[np.isfinite(resampled)]
        boot = float(resampled.std(ddof=1)) if resampled.size > 1 else math.nan
    coverage = 1 - ties / n if n else math.nan
    return WinRate(n, wins, losses, ties, int(invalid), p, se, boot, coverage)


def win_rate_from_replies(
    replies_policy_as_a: Sequence[str | None],
    replies_policy_as_b: Sequence[str | None],
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> WinRate:
    """The win rate from the judge's raw replies to both orders of every pair."""
    if len(replies_policy_as_a) != len(replies_policy_as_b):
        raise ValueError("each pair needs a verdict in both orders")
    first = [parse_verdict(r) for r in replies_policy_as_a]
    second = [parse_verdict(r) for r in replies_policy_as_b]
    invalid = sum(v == Verdict.INVALID for v in (*first, *second))
    outcomes = [pair_outcome(a, b) for a, b in zip(first, second, strict=True)]
    return win_rate(outcomes, invalid, bootstrap_samples, seed)
