"""A run and its controls compared at every evaluation, prompt by prompt.

The arms of a comparison are online runs that differ only in their simulated user (the profile's user
and control users such as `unrelated`); each evaluation judged every arm's greedy replies against the
same base replies, and kept each pair's outcome (`eval_replies/outcomes_at_<N>.jsonl`). Here the
outcomes of the run and of each control at the same point are paired by prompt
(`evaluation.paired`): the difference of their win rates, its bootstrap error and interval, and the
sign test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdpo_exp.errors import SdpoError
from sdpo_exp.evaluation.paired import paired_comparison
from sdpo_exp.evaluation.winrate import Outcome


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_outcomes(path: Path, profile: str, baseline: str) -> list[tuple[str, Outcome]]:
    """(prompt id, outcome) of every pair judged for `profile` against `baseline`, in file order."""
    return [
        (str(r["id"]), Outcome(r["outcome"]))
        for r in _jsonl(path)
        if r["profile"] == profile and r["baseline"] == baseline
    ]


def _outcomes(arm_dir: Path, interactions: int, profile: str, baseline: str) -> list[tuple[str, Outcome]]:
    path = arm_dir / "eval_replies" / f"outcomes_at_{interactions}.jsonl"
    found = read_outcomes(path, profile, baseline)
    if not found:
        raise SdpoError(
            f"{path} has no outcomes for {profile} vs {baseline}: the arm's evaluation is incomplete"
        )
    return found


def compare_arms(
    main_dir: Path,
    controls: Mapping[str, Path],
    baseline: str = "base",
    bootstrap_samples: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per control, evaluation point after training began and profile that both the run
    (`main_dir`) and the control evaluated against `baseline`: both win rates with their SEs, and the paired comparison
    of the run (A) with the control (B)."""
    # at 0 interactions every arm is the base model: nothing to compare
    main_rows = [
        r for r in _jsonl(main_dir / "winrate.jsonl") if r["baseline"] == baseline and r["interactions"] > 0
    ]
    out = []
    for label, control_dir in controls.items():
        theirs = {
            (r["interactions"], r["profile"]): r
            for r in _jsonl(control_dir / "winrate.jsonl")
            if r["baseline"] == baseline
        }
        for mine in main_rows:
            key = (mine["interactions"], mine["profile"])
            if key not in theirs:
                continue
            a = _outcomes(main_dir, *key, baseline)
            b = _outcomes(control_dir, *key, baseline)
            if [i for i, _ in a] != [i for i, _ in b]:
                raise SdpoError(
                    f"the run and the control '{label}' were evaluated on different prompts at {key[0]} interactions"
                )
            paired = paired_comparison([o for _, o in a], [o for _, o in b], bootstrap_samples, seed)
            other = theirs[key]
            out.append(
                {
                    "interactions": key[0],
                    "profile": key[1],
                    "control": label,
                    "baseline": baseline,
                    "se": mine["se"],
                    "control_se": other["se"],
                    "pairs_decided": mine["wins"] + mine["losses"],
                    "control_pairs_decided": other["wins"] + other["losses"],
                    **paired.to_json(),
                }
            )
    return out
