"""The benchmark table: each cell's score, standard error, paired difference to the first model and its
SE, checked against numpy (and hand-worked values) on scores built here: unequal per-item values,
instruction-level lists of different lengths, items one model lacks, judged win rates; and the
markdown table and verdict drawn from those cells."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from sdpo_exp.evaluation.benchmarks.harness import HarnessScore, mean_se
from sdpo_exp.evaluation.benchmarks.registry import get_benchmark
from sdpo_exp.evaluation.benchmarks.table import (
    Cell,
    harness_cells,
    judged_cells,
    markdown,
    paired_diff,
    verdicts,
)
from sdpo_exp.evaluation.winrate import Outcome, win_rate

IFEVAL = get_benchmark("ifeval")
HELLASWAG = get_benchmark("hellaswag")
PROMPT, INST = "prompt_level_loose_acc", "inst_level_loose_acc"


def _np_se(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(v.size))


def _score(bench, items: dict[str, dict[str, object]], n: int, available: int) -> HarnessScore:
    """A harness result whose aggregates are the (micro) means of its items, as the harness reports them."""
    scores = {}
    for metric, per_item in items.items():
        flat = np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)) for v in per_item.values()])
        scores[metric] = float(flat.mean())
    return HarnessScore(bench.name, scores, items, n, available)


def _ifeval(prompt: list[int], inst: list[list[bool]], drop: tuple[int, ...] = (), available: int = 0):
    """IFEval items ifeval/0.. (prompt level: one 0/1 per prompt; instruction level: a list per prompt);
    `drop`: prompts this model has no record of."""
    keys = [f"ifeval/{i}" for i in range(len(prompt))]
    keep = [i for i in range(len(prompt)) if i not in drop]
    items = {
        PROMPT: {keys[i]: prompt[i] for i in keep},
        "prompt_level_strict_acc": {keys[i]: prompt[i] for i in keep},
        INST: {keys[i]: list(inst[i]) for i in keep},
        "inst_level_strict_acc": {keys[i]: [False] * len(inst[i]) for i in keep},
    }
    return _score(IFEVAL, items, len(keep), available or len(keep))


# -- mean_se and paired_diff against hand-worked values -------------------------------------------------


def test_mean_se_is_the_sample_sd_over_root_n_worked_by_hand():
    # values 1, 0, 1, 1: mean 3/4, squared deviations 1/16 * 3 + 9/16 = 12/16, / (n - 1) = 1/4, / n = 1/16
    assert mean_se([1.0, 0.0, 1.0, 1.0]) == pytest.approx(0.25)
    assert mean_se([0.2, 0.4, 0.9]) == pytest.approx(_np_se([0.2, 0.4, 0.9]))
    assert math.isnan(mean_se([1.0]))  # one value: no spread to estimate


def test_paired_diff_of_two_prompt_level_scores_worked_by_hand():
    first = _ifeval([1, 0, 1, 1], [[True]] * 4)
    other = _ifeval([1, 1, 1, 0], [[True]] * 4)
    # per-item differences 0, +1, 0, -1: mean 0, sample variance 2/3, SE sqrt(2/3) / 2
    diff, se, n = paired_diff(first, other, PROMPT)
    assert (diff, n) == (0.0, 4)
    assert se == pytest.approx(math.sqrt(2 / 3) / 2)


# -- harness cells: unequal values, instruction lists, missing items ----------------------------------

FIRST_PROMPT = [1, 0, 1, 1, 0, 1, 0, 1]
OTHER_PROMPT = [1, 1, 0, 1, 1, 1, 0, 0]
# instructions per prompt: 1, 3, 2, 1, 4, 2, 1, 3
FIRST_INST = [[True], [False, True, True], [True, False], [False], [True, True, False, True], [True, True],
              [False], [True, False, False]]  # fmt: skip
OTHER_INST = [[True], [True, True, True], [False, False], [True], [True, False, False, True], [True, True],
              [True], [False, False, True]]  # fmt: skip
DROPPED = (2, 6)  # prompts the second model has no record of


@pytest.fixture()
def two_models():
    first = _ifeval(FIRST_PROMPT, FIRST_INST, available=12)
    other = _ifeval(OTHER_PROMPT, OTHER_INST, drop=DROPPED, available=12)
    return first, other, harness_cells(IFEVAL, [first, other], ["A", "B"])


def test_harness_cells_value_and_se_of_each_model_equal_numpy(two_models):
    first, other, cells = two_models
    by = {(c.metric, c.model): c for c in cells}
    assert len(cells) == 2 * len(IFEVAL.metrics)
    kept = [i for i in range(8) if i not in DROPPED]
    for label, prompt, inst, rows in (("A", FIRST_PROMPT, FIRST_INST, range(8)),
                                      ("B", OTHER_PROMPT, OTHER_INST, kept)):  # fmt: skip
        prompt_values = [prompt[i] for i in rows]
        inst_values = [float(x) for i in rows for x in inst[i]]  # every instruction of every prompt
        cell = by[(PROMPT, label)]
        assert cell.value == pytest.approx(np.mean(prompt_values))
        assert cell.se == pytest.approx(_np_se(prompt_values))
        cell = by[(INST, label)]
        assert cell.value == pytest.approx(np.mean(inst_values))
        assert cell.se == pytest.approx(_np_se(inst_values))
        assert (cell.n, cell.available) == (len(list(rows)), 12)
    # all-False strict instruction values: no spread, SE 0 (not undefined)
    assert by[("inst_level_strict_acc", "A")].se == 0.0


def test_harness_cells_diff_pairs_the_common_items_and_each_instruction(two_models):
    _, _, cells = two_models
    by = {(c.metric, c.model): c for c in cells}
    common = [i for i in range(8) if i not in DROPPED]
    prompt_diffs = np.array([OTHER_PROMPT[i] - FIRST_PROMPT[i] for i in common], dtype=float)
    inst_diffs = np.concatenate(
        [np.array(OTHER_INST[i], dtype=float) - np.array(FIRST_INST[i], dtype=float) for i in common]
    )
    assert inst_diffs.size == 14  # 1 + 3 + 1 + 4 + 2 + 3 instructions on the six common prompts
    cell = by[(PROMPT, "B")]
    assert cell.diff == pytest.approx(prompt_diffs.mean())
    assert cell.diff_se == pytest.approx(_np_se(prompt_diffs))
    cell = by[(INST, "B")]
    assert cell.diff == pytest.approx(inst_diffs.mean())
    assert cell.diff_se == pytest.approx(_np_se(inst_diffs))
    # over the common items, not the difference of the two aggregates (those cover different items)
    assert cell.diff != pytest.approx(by[(INST, "B")].value - by[(INST, "A")].value)
    assert by[(PROMPT, "A")].diff is None and by[(PROMPT, "A")].diff_se is None  # the first model


def test_paired_diff_reports_the_number_of_paired_values(two_models):
    first, other, _ = two_models
    assert paired_diff(first, other, PROMPT)[2] == 6
    assert paired_diff(first, other, INST)[2] == 14
    # prompts ifeval/8 and ifeval/9 only: nothing in common with the first model's ifeval/0..7
    lone = _ifeval([1] * 10, [[True]] * 10, drop=tuple(range(8)))
    assert paired_diff(first, lone, PROMPT) == (None, None, 0)


def test_a_model_identical_to_the_first_has_diff_zero_and_se_zero():
    first = _ifeval(FIRST_PROMPT, FIRST_INST)
    same = _ifeval(FIRST_PROMPT, FIRST_INST)
    cells = harness_cells(IFEVAL, [first, same], ["A", "A again"])
    assert all((c.diff, c.diff_se) == (0.0, 0.0) for c in cells if c.model == "A again")


# -- judged cells -----------------------------------------------------------------------------------

W, L, T = Outcome.WIN, Outcome.LOSS, Outcome.TIE
OUT_1 = [W, W, L, T, W, L, W, T, W, L, W, W]  # 7 won, 3 lost, 2 tied
OUT_2 = [L, W, L, L, T, L, W, L, W, T, L, W]  # 4 won, 6 lost, 2 tied
OUT_0 = [W, L, T, W, L, L, W, W, T, L, L, W]  # 5 won, 5 lost, 2 tied
ALPACA = get_benchmark("alpaca_eval")
SEED, SAMPLES = 3, 500


def _np_bootstrap_diff_se(a: list[Outcome], b: list[Outcome], samples: int, seed: int) -> float:
    """SE of (win rate of a - win rate of b), the prompts resampled together (numpy's default_rng)."""
    sa = np.array([{W: 1, T: 0, L: -1}[o] for o in a])
    sb = np.array([{W: 1, T: 0, L: -1}[o] for o in b])
    idx = np.random.default_rng(seed).integers(0, len(a), size=(samples, len(a)))
    wa, la = (sa[idx] == 1).sum(1), (sa[idx] == -1).sum(1)
    wb, lb = (sb[idx] == 1).sum(1), (sb[idx] == -1).sum(1)
    ok = (wa + la > 0) & (wb + lb > 0)
    d = wa[ok] / (wa[ok] + la[ok]) - wb[ok] / (wb[ok] + lb[ok])
    return float(d.std(ddof=1))


def test_judged_cells_with_the_first_model_as_reference():
    rates = [None, win_rate(OUT_1, 1, 200, SEED), win_rate(OUT_2, 0, 200, SEED)]
    cells = judged_cells(ALPACA, [None, OUT_1, OUT_2], rates, ["base", "m1", "m2"], 805, SAMPLES, SEED)
    assert [c.model for c in cells] == ["base", "m1", "m2"]
    ref = cells[0]
    assert ref.reference and ref.value is None and ref.se is None and ref.n == 0 and ref.available == 805
    for cell, wins, losses, ties in ((cells[1], 7, 3, 2), (cells[2], 4, 6, 2)):
        p = wins / (wins + losses)
        assert not cell.reference
        assert cell.value == pytest.approx(p)
        assert cell.se == pytest.approx(math.sqrt(p * (1 - p) / (wins + losses)))
        assert (cell.n, cell.available) == (12, 805)
        assert (cell.extra["wins"], cell.extra["losses"], cell.extra["ties"]) == (wins, losses, ties)
        assert cell.extra["coverage"] == pytest.approx(1 - ties / 12)
        # the win rate against the first model's answers is the comparison: its distance from 50%
        assert cell.diff == pytest.approx(p - 0.5) and cell.diff_se == pytest.approx(cell.se)
    assert cells[1].extra["invalid"] == 1
    text = markdown(cells, [ALPACA], ["base", "m1", "m2"], [], "T")
    row = next(line for line in text.splitlines() if line.startswith(f"| {ALPACA.title} |"))
    assert [c.strip() for c in row.strip("|").split("|")][3:] == [
        "reference", "70.0 ± 14.5 (+20.0 ± 14.5)", "40.0 ± 15.5 (-10.0 ± 15.5)"]  # fmt: skip


def test_judged_cells_with_another_reference_bootstrap_the_paired_difference():
    outcomes = [OUT_0, OUT_1, OUT_2]
    rates = [win_rate(o, 0, 200, SEED) for o in outcomes]
    cells = judged_cells(ALPACA, outcomes, rates, ["m0", "m1", "m2"], 12, SAMPLES, SEED)
    assert not any(c.reference for c in cells)
    assert cells[0].value == pytest.approx(0.5) and cells[0].diff is None
    # differences of hand-counted win rates: 7/10 - 5/10 and 4/10 - 5/10
    assert cells[1].diff == pytest.approx(0.2)
    assert cells[2].diff == pytest.approx(-0.1)
    assert cells[1].diff_se == pytest.approx(_np_bootstrap_diff_se(OUT_1, OUT_0, SAMPLES, SEED))
    assert cells[2].diff_se == pytest.approx(_np_bootstrap_diff_se(OUT_2, OUT_0, SAMPLES, SEED))
    assert cells[1].diff_se > 0 and cells[2].diff_se > 0


# -- markdown and verdicts --------------------------------------------------------------------------

N = 20
BASE = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
BETTER = [1 if i in (1, 4, 5, 7, 9, 10, 12, 13) else v for i, v in enumerate(BASE)]  # 8 gained
WORSE = [0 if i in (0, 2, 3, 6, 8, 11, 14, 17) else v for i, v in enumerate(BASE)]  # 8 lost
MIXED = [1 - v if i in (0, 1, 4, 8) else v for i, v in enumerate(BASE)]  # 2 gained, 2 lost
INST_LISTS = [[True] * (1 + i % 3) for i in range(N)]


def _hellaswag(acc_norm: list[int], acc: list[int], n: int, available: int) -> HarnessScore:
    keys = [f"hellaswag/{i}" for i in range(len(acc_norm))]
    items = {"acc_norm": dict(zip(keys, acc_norm, strict=True)), "acc": dict(zip(keys, acc, strict=True))}
    return _score(HELLASWAG, items, n, available)


@pytest.fixture()
def table_cells():
    labels = ["base", "better", "worse", "mixed"]
    ifeval = [_ifeval(p, INST_LISTS, available=541) for p in (BASE, BETTER, WORSE, MIXED)]
    # HellaSwag on every item: the same scores reversed for "better" (a significant drop there)
    hs = [_hellaswag(BASE, BASE, N, N), _hellaswag(WORSE, BASE, N, N), _hellaswag(BASE, BASE, N, N),
          _hellaswag(BETTER, MIXED, N, N)]  # fmt: skip
    cells = harness_cells(IFEVAL, ifeval, labels) + harness_cells(HELLASWAG, hs, labels)
    return labels, cells


def _rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(benchmark title, metric) -> the row's cells after `items`; and `items` under key (.., 'items')."""
    out, title = {}, ""
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| benchmark"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        title = cells[0] or title
        out[(title, cells[1])] = cells[3:]
        out[(title, cells[1], "items")] = [cells[2]]
    return out


def test_markdown_has_a_row_per_benchmark_metric_with_brackets_after_the_first_model(table_cells):
    labels, cells = table_cells
    text = markdown(cells, [IFEVAL, HELLASWAG], labels, ["a note"], "Benchmarks")
    header = next(line for line in text.splitlines() if line.startswith("| benchmark"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["benchmark", "metric", "items", *labels]
    rows = _rows(text)
    expected_rows = {("IFEval", m) for m in IFEVAL.metrics} | {("HellaSwag", m) for m in HELLASWAG.metrics}
    assert {k for k in rows if len(k) == 2} == expected_rows
    assert "- a note" in text
    by = {(c.benchmark, c.metric, c.model): c for c in cells}
    pattern = re.compile(r"^(-?\d+\.\d) ± (\d+\.\d)(?: \(([+-]\d+\.\d) ± (\d+\.\d)( \*)?\))?$")
    for bench in (IFEVAL, HELLASWAG):
        for metric in bench.metrics:
            texts = rows[(bench.title, metric)]
            assert len(texts) == len(labels)
            for k, (label, cell_text) in enumerate(zip(labels, texts, strict=True)):
                cell = by[(bench.name, metric, label)]
                m = pattern.match(cell_text)
                assert m, cell_text
                assert m.group(1) == f"{100 * cell.value:.1f}" and m.group(2) == f"{100 * cell.se:.1f}"
                if k == 0:
                    assert m.group(3) is None, cell_text  # the first model: no difference
                    continue
                assert m.group(3) is not None, cell_text
                assert float(m.group(3)) == pytest.approx(100 * cell.diff, abs=0.051)
                assert float(m.group(4)) == pytest.approx(100 * cell.diff_se, abs=0.051)
                assert (m.group(5) is not None) == (abs(cell.diff) > 1.96 * cell.diff_se), cell_text


def test_the_significance_marks_fall_where_numpy_says(table_cells):
    labels, cells = table_cells
    rows = _rows(markdown(cells, [IFEVAL, HELLASWAG], labels, [], "B"))
    marked = {}
    for name, metric, values in (("IFEval", PROMPT, (BETTER, WORSE, MIXED)),
                                 ("HellaSwag", "acc_norm", (WORSE, BASE, BETTER))):  # fmt: skip
        for label, v, text in zip(labels[1:], values, rows[(name, metric)][1:], strict=True):
            d = np.asarray(v, float) - np.asarray(BASE, float)
            marked[(name, label)] = text.endswith(" *)")
            assert marked[(name, label)] == (abs(d.mean()) > 1.96 * _np_se(d)), (name, label, text)
    # 8 of 20 gained: +0.4 against SE 0.112 -> marked; 2 gained and 2 lost: 0 -> not
    assert marked == {("IFEval", "better"): True, ("IFEval", "worse"): True, ("IFEval", "mixed"): False,
                      ("HellaSwag", "better"): True, ("HellaSwag", "worse"): False,
                      ("HellaSwag", "mixed"): True}  # fmt: skip


def test_items_column_says_subset_only_when_fewer_than_available(table_cells):
    labels, cells = table_cells
    rows = _rows(markdown(cells, [IFEVAL, HELLASWAG], labels, [], "B"))
    assert rows[("IFEval", PROMPT, "items")] == ["20 of 541 (subset)"]
    assert rows[("HellaSwag", "acc_norm", "items")] == ["20"]


def test_verdicts_say_better_worse_or_within(table_cells):
    labels, cells = table_cells
    lines = verdicts(cells, [IFEVAL, HELLASWAG], labels)
    assert lines == [
        "- **better** against base: better on IFEval; worse on HellaSwag.",
        "- **worse** against base: worse on IFEval; within 1.96 SE on HellaSwag.",
        "- **mixed** against base: better on HellaSwag; within 1.96 SE on IFEval.",
    ]
    text = markdown(cells, [IFEVAL, HELLASWAG], labels, [], "B")
    assert "## Verdict" in text and all(line in text for line in lines)
    # one model: no verdict
    only = [c for c in cells if c.model == "base"]
    assert "## Verdict" not in markdown(only, [IFEVAL, HELLASWAG], ["base"], [], "B")


def test_a_difference_with_zero_standard_error_is_beyond_1_96_se():
    """Every item gained: the per-item differences are all +1, so their SE is 0 and |d| = 1 > 1.96 * 0."""
    base = _hellaswag([0] * 6, [0] * 6, 6, 6)
    solved = _hellaswag([1] * 6, [0] * 6, 6, 6)
    cells = harness_cells(HELLASWAG, [base, solved], ["base", "solved"])
    cell = next(c for c in cells if c.model == "solved" and c.metric == "acc_norm")
    assert (cell.diff, cell.diff_se) == (1.0, 0.0)
    row = _rows(markdown(cells, [HELLASWAG], ["base", "solved"], [], "B"))[("HellaSwag", "acc_norm")]
    assert row[1] == "100.0 ± 0.0 (+100.0 ± 0.0 *)"
    assert verdicts(cells, [HELLASWAG], ["base", "solved"]) == [
        "- **solved** against base: better on HellaSwag."
    ]


def test_cell_json_turns_non_finite_numbers_into_null():
    cell = Cell("hellaswag", "acc", "m", float("nan"), float("inf"), 1, 1)
    assert cell.to_json()["value"] is None and cell.to_json()["se"] is None
