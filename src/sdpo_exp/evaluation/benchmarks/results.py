"""A benchmark run's final metrics, and its scores written where sweeps find them: each evaluated
run's `benchmark_summary.json` (merged into that run's row of the sweep summary), and the sweep's
summary ranked by a benchmark (by the task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdpo_exp.data.jsonl import write_json
from sdpo_exp.evaluation.benchmarks.models import ModelEntry
from sdpo_exp.evaluation.benchmarks.registry import Benchmark
from sdpo_exp.evaluation.benchmarks.table import Cell

SUMMARY = "benchmark_summary.json"


def model_metrics(cells: list[Cell], benches: list[Benchmark], label: str) -> dict[str, float]:
    """`benchmark/<name>` (headline metric) and `benchmark/<name>/<metric>` of one model, and
    `diff/<name>`: its headline difference to the first model."""
    heads = {b.name: b.metric for b in benches}
    out: dict[str, float] = {}
    for c in cells:
        if c.model != label or c.value is None:
            continue
        out[f"benchmark/{c.benchmark}/{c.metric}"] = c.value
        if heads[c.benchmark] == c.metric:
            out[f"benchmark/{c.benchmark}"] = c.value
            if c.diff is not None:
                out[f"diff/{c.benchmark}"] = c.diff
    return out


def run_metrics(cells: list[Cell], benches: list[Benchmark], labels: list[str]) -> dict[str, float]:
    """The final metrics: the last model's (with one model, that model's), so that a multirun with one
    checkpoint per job ranks its jobs by `benchmark/<name>`."""
    return model_metrics(cells, benches, labels[-1])


def write_run_summaries(models: list[ModelEntry], cells: list[Cell], benches: list[Benchmark]) -> list[Path]:
    """Each evaluated run gets its scores in `benchmark_summary.json`; returns the sweeps among them."""
    sweeps: list[Path] = []
    for entry in models:
        if entry.run_dir is None:
            continue
        scores: dict[str, Any] = model_metrics(cells, benches, entry.label)
        write_json(Path(entry.run_dir) / SUMMARY, scores)
        if entry.sweep_dir is not None and entry.sweep_dir not in sweeps:
            sweeps.append(entry.sweep_dir)
    return sweeps
