"""The paired comparison of two policies on synthetic outcomes whose answers are known, and the sign
test against a brute-force enumeration of sign patterns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sdpo_exp.evaluation.paired import paired_comparison, sign_test_p
from sdpo_exp.evaluation.winrate import Outcome

W, L, T = Outcome.WIN, Outcome.LOSS, Outcome.TIE


def _brute_force_sign_p(plus: int, minus: int) -> float:
    """Share of the 2^n equally likely sign patterns at least as uneven as the one observed."""
    n = plus + minus
    if n == 0:
        return 1.0
    observed = abs(plus - minus)
    extreme = sum(1 for signs in itertools.product((1, -1), repeat=n) if abs(sum(signs)) >= observed)
    return extreme / 2**n


@pytest.mark.parametrize(("plus", "minus"), [(0, 0), (1, 0), (8, 0), (5, 5), (6, 2), (2, 9), (10, 3), (7, 7)])
def test_sign_test_matches_enumeration(plus, minus):
    assert sign_test_p(plus, minus) == pytest.approx(_brute_force_sign_p(plus, minus), abs=1e-12)


def test_sign_test_known_values():
    assert sign_test_p(8, 0) == pytest.approx(2 / 256)
    assert sign_test_p(5, 5) == 1.0
    assert sign_test_p(20, 6) == pytest.approx(0.009, abs=5e-4)  # a textbook value


def test_counts_and_rates_of_a_constructed_pairing():
    # A: 30 wins, 10 losses, 24 ties; B: 10 wins, 10 losses, 44 ties; arranged prompt by prompt
    a = [W] * 30 + [L] * 10 + [T] * 24
    b = [T] * 20 + [W] * 10 + [L] * 10 + [T] * 24
    r = paired_comparison(a, b, bootstrap_samples=4000, seed=1)
    assert (r.prompts, r.win_rate_a, r.win_rate_b) == (64, 0.75, 0.5)
    assert r.diff == pytest.approx(0.25)
    # prompt by prompt: W>T (20), W<W? no: W=W (10), L>L? equal (10)... counted explicitly
    favour_a = sum((x, y) in {(W, T), (W, L), (T, L)} for x, y in zip(a, b, strict=True))
    favour_b = sum((x, y) in {(T, W), (L, W), (L, T)} for x, y in zip(a, b, strict=True))
    assert (r.favour_a, r.favour_b, r.same) == (favour_a, favour_b, 64 - favour_a - favour_b)
    assert r.p_sign == pytest.approx(_sign_p_scipy_free(favour_a, favour_b))
    assert r.ci_low < r.diff < r.ci_high


def _sign_p_scipy_free(k: int, m: int) -> float:
    n = k + m
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, m) + 1)) / 2**n)


def test_bootstrap_error_agrees_with_a_plain_resampling_loop():
    rng = np.random.default_rng(7)
    a = list(rng.choice([W, L, T], size=80, p=[0.5, 0.2, 0.3]))
    b = list(rng.choice([W, L, T], size=80, p=[0.3, 0.3, 0.4]))
    r = paired_comparison(a, b, bootstrap_samples=4000, seed=3)
    # an independent bootstrap written as a loop over resamples, with another RNG stream
    loop = np.random.default_rng(99)
    diffs = []
    for _ in range(4000):
        idx = loop.integers(0, 80, size=80)
        wa, la = sum(a[i] == W for i in idx), sum(a[i] == L for i in idx)
        wb, lb = sum(b[i] == W for i in idx), sum(b[i] == L for i in idx)
        diffs.append(wa / (wa + la) - wb / (wb + lb))
    assert r.bootstrap_se == pytest.approx(float(np.std(diffs, ddof=1)), rel=0.1)
    assert r.ci_low == pytest.approx(float(np.quantile(diffs, 0.025)), abs=0.04)


def test_identical_arms_and_a_clear_difference():
    same = [W, L, T, W, T, L, W, T] * 8
    r = paired_comparison(same, same, bootstrap_samples=1000)
    assert (r.favour_a, r.favour_b, r.diff, r.p_sign) == (0, 0, 0.0, 1.0)
    assert r.p_bootstrap == 1.0
    a = [W] * 40 + [T] * 4 + [W] * 10 + [L] * 10
    b = [T] * 40 + [T] * 4 + [W] * 10 + [L] * 10
    better = paired_comparison(a, b, bootstrap_samples=2000)
    assert better.p_sign < 1e-6 and better.p_bootstrap < 0.01 and better.diff == pytest.approx(50 / 60 - 0.5)
    # with few decided pairs a win rate swings between 0 and 1 under resampling: the sign test still
    # sees the paired improvement, the bootstrap of the difference of win rates cannot
    few = paired_comparison(
        [W] * 40 + [T] * 24, [T] * 40 + [W] * 2 + [L] * 2 + [T] * 20, bootstrap_samples=2000
    )
    assert few.p_sign < 1e-6 and few.p_bootstrap > 0.05 and few.ci_low <= 0


def test_undecided_arms_give_no_rate_and_unequal_lengths_fail():
    r = paired_comparison([T] * 10, [T] * 10)
    assert math.isnan(r.win_rate_a) and r.to_json()["diff"] is None and r.p_sign == 1.0
    with pytest.raises(ValueError):
        paired_comparison([W], [W, L])
