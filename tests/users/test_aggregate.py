"""`python -m sdpo_exp.evaluation.aggregate`: win-rate curves of a seed sweep as one, checked against
means and standard errors computed here from the rows written."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from sdpo_exp.evaluation.aggregate import aggregate, find_runs

RATES = {1: [0.5, 0.6, 0.7], 2: [0.5, 0.8, 0.9], 3: [0.5, 0.55, None]}  # seed -> user arm at 0, 64, 128
CONTROL = {1: [0.5, 0.5, 0.45], 2: [0.5, 0.4, 0.5], 3: [0.5, 0.6, 0.55]}


def _write_run(run, seed):
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\ntask:\n  name: online\n")
    rows = []
    for arm, rates in (("user", RATES[seed]), ("unrelated", CONTROL[seed])):
        for n, rate in zip((0, 64, 128), rates, strict=True):
            rows.append({"arm": arm, "interactions": n, "profile": "answer_directly", "baseline": "base",
                         "win_rate": rate, "se": 0.1})  # fmt: skip
    (run / "winrate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "oracle.jsonl").write_text(
        json.dumps({"profile": "answer_directly", "win_rate": 0.6 + 0.05 * seed}) + "\n"
    )
    comparison = [{"control": "unrelated", "profile": "answer_directly", "interactions": n, "diff": None if a is None else a - b}
                  for n, a, b in zip((64, 128), RATES[seed][1:], CONTROL[seed][1:], strict=True)]  # fmt: skip
    (run / "comparison.json").write_text(json.dumps(comparison))


def _expect(values):
    arr = np.array([v for v in values if v is not None])
    return arr.mean(), arr.std(ddof=1) / math.sqrt(arr.size)


def test_means_and_errors_over_runs(tmp_path):
    sweep = tmp_path / "multirun"
    for k, seed in enumerate((1, 2, 3)):
        _write_run(sweep / str(k), seed)
    (sweep / "not_a_run").mkdir()
    runs = find_runs([sweep])
    assert [r.name for r in runs] == ["0", "1", "2"]
    result = aggregate(runs)
    by = {(r["arm"], r["interactions"]): r for r in result["curves"]}
    mean, se = _expect([RATES[s][1] for s in (1, 2, 3)])
    assert by[("user", 64)]["mean"] == pytest.approx(mean) and by[("user", 64)]["se"] == pytest.approx(se)
    mean, se = _expect([RATES[s][2] for s in (1, 2)])  # seed 3 had no decided pair at 128
    assert by[("user", 128)]["mean"] == pytest.approx(mean) and by[("user", 128)]["se"] == pytest.approx(se)
    assert (by[("user", 128)]["runs"], by[("user", 128)]["runs_decided"]) == (3, 2)
    mean, _ = _expect([CONTROL[s][2] for s in (1, 2, 3)])
    assert by[("unrelated", 128)]["mean"] == pytest.approx(mean)
    assert by[("user", 0)]["se"] == 0.0  # every seed starts at the base model
    diff = {r["interactions"]: r for r in result["differences"]}
    assert diff[64]["mean"] == pytest.approx(np.mean([RATES[s][1] - CONTROL[s][1] for s in (1, 2, 3)]))
    assert result["oracle"][0]["mean"] == pytest.approx(0.7)
    assert [r["seed"] for r in result["runs"]] == [1, 2, 3]


def test_the_command_writes_table_json_and_plot(tmp_path):
    for seed in (1, 2):
        _write_run(tmp_path / f"seed{seed}", seed)
    out = tmp_path / "agg"
    proc = subprocess.run([sys.executable, "-m", "sdpo_exp.evaluation.aggregate", str(tmp_path / "seed1"),
                           str(tmp_path / "seed2"), "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = (out / "aggregate.md").read_text()
    assert (
        "# Win rates over 2 runs" in table
        and "| user | answer_directly | base | 64 | 70.0% | 10.0% | 2/2 |" in table
    )
    assert json.loads((out / "aggregate.json").read_text())["runs"][1]["seed"] == 2
    assert (out / "aggregate.png").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "sdpo_exp.evaluation.aggregate", str(tmp_path / "agg")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "not an online run or sweep" in bad.stderr
