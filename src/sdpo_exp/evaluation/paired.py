"""Two policies judged against the same baseline on the same prompts: is one better than the other?

Each policy's pair on prompt i has an outcome against the baseline (win, loss or tie; see
`evaluation.winrate`). Because both policies answer the same prompts and face the same baseline
replies, their outcomes are paired, and the comparison uses that pairing:

- the **sign test**: score each outcome +1 (win), 0 (tie), -1 (loss); prompt i favours policy A
  when A's score is higher than B's. Under the null hypothesis that neither policy is better, a
  prompt that favours one of them favours A or B with probability 1/2, so the number of prompts
  favouring A among those favouring either is Binomial(n, 1/2); the two-sided p-value is exact;
- the **paired bootstrap** of the difference of win rates (wins / (wins + losses), ties left out):
  prompts are resampled with replacement, both policies' outcomes on a prompt together, giving the
  difference's standard error, a 95% percentile interval and a two-sided p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sdpo_exp.evaluation.winrate import Outcome, rates

SCORE = {Outcome.WIN: 1, Outcome.TIE: 0, Outcome.LOSS: -1}


def sign_test_p(favour_a: int, favour_b: int) -> float:
    """Two-sided exact sign test: P(a split at least as uneven | each prompt favours A or B with
    probability 1/2). 1.0 when no prompt favours either."""
    n = favour_a + favour_b
    if n == 0:
        return 1.0
    low = min(favour_a, favour_b)
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedComparison:
    prompts: int
    favour_a: int  # prompts on which A's outcome is better than B's
    favour_b: int
    same: int
    win_rate_a: float  # NaN when none of A's pairs was decided
    win_rate_b: float
    diff: float  # win_rate_a - win_rate_b
    bootstrap_se: float
    ci_low: float  # 95% percentile interval of the difference
    ci_high: float
    p_bootstrap: float  # two-sided
    p_sign: float  # two-sided exact sign test

    def to_json(self) -> dict[str, float | int | None]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def paired_comparison(
    outcomes_a: Sequence[Outcome], outcomes_b: Sequence[Outcome], bootstrap_samples: int = 2000, seed: int = 0
) -> PairedComparison:
    """A against B, prompt by prompt (`outcomes_a[i]` and `outcomes_b[i]` are on the same prompt)."""
    if len(outcomes_a) != len(outcomes_b):
        raise ValueError("both policies need an outcome on every prompt")
    a = np.array([SCORE[o] for o in outcomes_a], dtype=np.int64)
    b = np.array([SCORE[o] for o in outcomes_b], dtype=np.int64)
    n = len(a)
    favour_a, favour_b = int((a > b).sum()), int((a < b).sum())
    rate_a = float(rates(np.array((a == 1).sum()), np.array((a == -1).sum())))
    rate_b = float(rates(np.array((b == 1).sum()), np.array((b == -1).sum())))
    se = low = high = p_boot = math.nan
    if n and bootstrap_samples > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(bootstrap_samples, n))
        ra, rb = a[idx], b[idx]
        diffs = rates((ra == 1).sum(1), (ra == -1).sum(1)) - rates((rb == 1).sum(1), (rb == -1).sum(1))
        diffs = diffs[np.isfinite(diffs)]
        if diffs.size > 1:
            se = float(diffs.std(ddof=1))
            low, high = (float(q) for q in np.quantile(diffs, [0.025, 0.975]))
            below = (np.count_nonzero(diffs <= 0) + 1) / (diffs.size + 1)
            above = (np.count_nonzero(diffs >= 0) + 1) / (diffs.size + 1)
            p_boot = float(min(1.0, 2 * min(below, above)))
    return PairedComparison(
        prompts=n, favour_a=favour_a, favour_b=favour_b, same=n - favour_a - favour_b,
        win_rate_a=rate_a, win_rate_b=rate_b, diff=rate_a - rate_b, bootstrap_se=se,
        ci_low=low, ci_high=high, p_bootstrap=p_boot, p_sign=sign_test_p(favour_a, favour_b),
    )  # fmt: skip
