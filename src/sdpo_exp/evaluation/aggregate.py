"""Win-rate curves of several online runs (a seed sweep) as one: the mean and its standard error over
runs at each evaluation point, per arm (the run and its controls), profile and baseline.

    python -m sdpo_exp.evaluation.aggregate DIR [DIR ...] [--out OUT]

Each DIR is a run directory of `task=online` (with or without controls) or a directory holding such
runs (a multirun's sweep directory). Writes `aggregate.md`, `aggregate.json` and `aggregate.png` into
OUT (default: the sweep directory, or the common parent of the runs). The standard error over runs is
std / sqrt(runs) (ddof 1): it measures how much the curve moves with the seed, which the per-run SE
of a win rate over prompts does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sdpo_exp.data.jsonl import write_json
from sdpo_exp.errors import SdpoError
from sdpo_exp.evaluation.plots import save_winrate_figure
from sdpo_exp.evaluation.report import pct

log = logging.getLogger(__name__)

PLAIN_ARM = "run"  # the arm name of a run without controls


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def find_runs(dirs: Sequence[Path]) -> list[Path]:
    """The run directories in `dirs`: each DIR itself when it has a winrate.jsonl, else its direct
    subdirectories that have one (a sweep), in order."""
    runs: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            raise SdpoError(f"{d} is not a directory")
        if (d / "winrate.jsonl").is_file():
            runs.append(d)
            continue
        found = sorted((s for s in d.iterdir() if (s / "winrate.jsonl").is_file()), key=_natural)
        if not found:
            raise SdpoError(
                f"{d} has no winrate.jsonl and no subdirectory with one: not an online run or sweep"
            )
        runs += found
    return runs


def _natural(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def _seed(run: Path) -> Any:
    config = run / "config.yaml"
    if config.is_file():
        return (yaml.safe_load(config.read_text()) or {}).get("seed")
    return None


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
    return float(arr.mean()), se


def aggregate(runs: Sequence[Path]) -> dict[str, Any]:
    """{"runs": [...], "curves": rows per (arm, profile, baseline, interactions), "oracle": rows per
    profile, "differences": rows per (control, profile, interactions)}: means and SEs over runs."""
    curves: dict[tuple, list[float | None]] = defaultdict(list)
    oracle: dict[str, list[float | None]] = defaultdict(list)
    diffs: dict[tuple, list[float | None]] = defaultdict(list)
    seeds = []
    for run in runs:
        seeds.append(_seed(run))
        for row in _jsonl(run / "winrate.jsonl"):
            key = (row.get("arm", PLAIN_ARM), row["profile"], row["baseline"], int(row["interactions"]))
            curves[key].append(row["win_rate"])
        for row in _jsonl(run / "oracle.jsonl"):
            oracle[row["profile"]].append(row["win_rate"])
        comparison = run / "comparison.json"
        for row in json.loads(comparison.read_text()) if comparison.is_file() else []:
            diffs[(row["control"], row["profile"], int(row["interactions"]))].append(row["diff"])
    known = [s for s in seeds if s is not None]
    if len(set(known)) < len(known):
        log.warning("Some runs share a seed (%s): they are not independent samples", known)

    def summarise(values: list[float | None]) -> dict[str, Any]:
        mean, se = _mean_se([v for v in values if v is not None])
        return {"mean": _num(mean), "se": _num(se), "runs": len(values),
                "runs_decided": sum(v is not None for v in values), "values": values}  # fmt: skip

    return {
        "runs": [{"dir": str(r), "seed": s} for r, s in zip(runs, seeds, strict=True)],
        "curves": [
            {"arm": a, "profile": p, "baseline": b, "interactions": n, **summarise(v)}
            for (a, p, b, n), v in sorted(curves.items())
        ],  # fmt: skip
        "oracle": [{"profile": p, **summarise(v)} for p, v in sorted(oracle.items())],
        "differences": [
            {"control": c, "profile": p, "interactions": n, **summarise(v)}
            for (c, p, n), v in sorted(diffs.items())
        ],  # fmt: skip
    }


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_table(path: Path, result: dict[str, Any]) -> Path:
    runs = result["runs"]
    lines = [
        f"# Win rates over {len(runs)} runs",
        "",
        "Mean over runs ± the standard error over runs (std / sqrt(runs)); `runs` counts the runs with a "
        "decided win rate at that point.",
        "",
        "| runs | seed |",
        "|---|---|",
        *[f"| {r['dir']} | {r['seed']} |" for r in runs],
        "",
        "| arm | profile | baseline | interactions | mean win rate | SE over runs | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["curves"]:
        lines.append(f"| {r['arm']} | {r['profile']} | {r['baseline']} | {r['interactions']} | {pct(r['mean'])} | "
                     f"{pct(r['se'])} | {r['runs_decided']}/{r['runs']} |")  # fmt: skip
    if result["differences"]:
        lines += ["", "The run's win rate minus each control's, per run, then over runs:", "",
                  "| control | profile | interactions | mean difference | SE over runs | runs |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["differences"]:
            lines.append(f"| {r['control']} | {r['profile']} | {r['interactions']} | {pct(r['mean'])} | "
                         f"{pct(r['se'])} | {r['runs_decided']}/{r['runs']} |")  # fmt: skip
    for r in result["oracle"]:
        spread = "the same in every run" if r["se"] == 0 else f"± {pct(r['se'])} over {r['runs']} runs"
        lines += ["", f"In-context oracle ({r['profile']}): {pct(r['mean'])} ({spread})."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot(path: Path, result: dict[str, Any], baseline: str = "base") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in result["curves"]:
        if r["baseline"] == baseline:
            series[(r["arm"], r["profile"])].append(r)
    first = ("user", PLAIN_ARM)  # the run's own arm first: the same colours as a run's winrate.png
    for (arm, profile), rows in sorted(series.items(), key=lambda kv: (kv[0][0] not in first, kv[0])):
        xs = [r["interactions"] for r in rows]
        # at 0 interactions every run is the base model: all pairs tied, 50% by definition
        ys = np.array([0.5 if r["interactions"] == 0 and r["runs_decided"] == 0 else
                       math.nan if r["mean"] is None else r["mean"] for r in rows])  # fmt: skip
        se = np.array([0.0 if r["se"] is None else r["se"] for r in rows])
        name = "SDPO (the profile's user)" if arm in first else f"control: {arm} follow-ups"
        (line,) = ax.plot(xs, ys, marker="o", label=f"{name}, {profile}")
        ax.fill_between(xs, ys - se, ys + se, color=line.get_color(), alpha=0.18)
        for k in range(max(r["runs"] for r in rows)):  # each run, thin
            one = [
                r["values"][k] if k < len(r["values"]) and r["values"][k] is not None else math.nan
                for r in rows
            ]
            ax.plot(xs, one, color=line.get_color(), alpha=0.25, linewidth=0.8)
    for r in result["oracle"]:
        if r["mean"] is not None:
            ax.axhline(
                r["mean"],
                color="black",
                linestyle="-.",
                linewidth=1,
                label=f"in-context oracle ({r['profile']})",
            )
    title = f"mean over {len(result['runs'])} runs, ±1 SE over runs (thin: each run)"
    return save_winrate_figure(fig, ax, path, title, f"win rate against the {baseline} model", "upper left")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdpo_exp.evaluation.aggregate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "dirs", nargs="+", type=Path, help="online run directories, or sweep directories holding them"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write aggregate.{md,json,png}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        runs = find_runs(args.dirs)
    except SdpoError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    out = args.out
    if out is None:
        out = (
            args.dirs[0]
            if len(args.dirs) == 1 and runs[0] != args.dirs[0]
            else Path(os.path.commonpath([r.parent for r in runs]))
        )
    out.mkdir(parents=True, exist_ok=True)
    result = aggregate(runs)
    write_json(out / "aggregate.json", result)
    write_table(out / "aggregate.md", result)
    plot(out / "aggregate.png", result)
    log.info(
        "%d runs aggregated: %s, %s, %s",
        len(runs),
        out / "aggregate.md",
        out / "aggregate.json",
        out / "aggregate.png",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
