"""Win-rate arithmetic on synthetic verdicts, against counts and formulas written out here."""

from __future__ import annotations

import math

import pytest

from sdpo_exp.evaluation.winrate import (
    Outcome,
    Verdict,
    pair_outcome,
    parse_verdict,
    win_rate,
    win_rate_from_replies,
)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [("A", Verdict.A), (" B\n", Verdict.B), ("C", Verdict.TIE), ("a", Verdict.INVALID), ("A.", Verdict.INVALID),
     ("Response A", Verdict.INVALID), ("AB", Verdict.INVALID), ("", Verdict.INVALID), (None, Verdict.INVALID),
     ("I prefer B", Verdict.INVALID)],
)  # fmt: skip
def test_parsing_is_strict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_swapped_positions_must_agree():
    # policy shown as A first, as B second
    assert pair_outcome(Verdict.A, Verdict.B) == Outcome.WIN
    assert pair_outcome(Verdict.B, Verdict.A) == Outcome.LOSS
    assert pair_outcome(Verdict.A, Verdict.A) == Outcome.TIE  # position bias: the judge always picks A
    assert pair_outcome(Verdict.B, Verdict.B) == Outcome.TIE
    assert pair_outcome(Verdict.A, Verdict.TIE) == Outcome.TIE
    assert pair_outcome(Verdict.INVALID, Verdict.B) == Outcome.TIE
    assert pair_outcome(Verdict.TIE, Verdict.TIE) == Outcome.TIE


def test_counts_rate_errors_and_coverage():
    first = ["A"] * 6 + ["B"] * 2 + ["A"] * 3 + ["C"] + ["garbage"]
    second = ["B"] * 6 + ["A"] * 2 + ["A"] * 3 + ["C"] + ["B"]
    result = win_rate_from_replies(first, second, bootstrap_samples=2000, seed=1)
    assert (result.pairs, result.wins, result.losses, result.ties, result.invalid) == (13, 6, 2, 5, 1)
    assert result.win_rate == pytest.approx(6 / 8)
    assert result.se == pytest.approx(math.sqrt(0.75 * 0.25 / 8))
    assert result.coverage == pytest.approx(1 - 5 / 13)
    # the bootstrap SE of a ratio of 8 decided pairs out of 13 is near the analytic one
    assert 0.5 * result.se < result.bootstrap_se < 1.5 * result.se
    again = win_rate_from_replies(first, second, bootstrap_samples=2000, seed=1)
    assert again.bootstrap_se == result.bootstrap_se  # seeded
    assert (
        win_rate_from_replies(first, second, bootstrap_samples=2000, seed=2).bootstrap_se
        != result.bootstrap_se
    )


def test_all_ties_and_all_invalid_give_no_rate():
    ties = win_rate_from_replies(["C"] * 4, ["C"] * 4)
    assert ties.ties == 4 and ties.coverage == 0.0
    assert math.isnan(ties.win_rate) and math.isnan(ties.se) and math.isnan(ties.bootstrap_se)
    broken = win_rate_from_replies(["?"] * 3, ["sure"] * 3)
    assert broken.invalid == 6 and broken.ties == 3 and math.isnan(broken.win_rate)
    empty = win_rate([])
    assert empty.pairs == 0 and math.isnan(empty.coverage)


def test_all_wins_has_zero_error():
    result = win_rate([Outcome.WIN] * 5)
    assert result.win_rate == 1.0 and result.se == 0.0 and result.bootstrap_se == 0.0


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        win_rate_from_replies(["A"], ["B", "A"])
