"""`task=benchmark`: the paper's benchmark table (Section 4.1) for a list of models.

1. Resolve the models (base, model, run and sweep directories) and check every benchmark's data.
2. For each model: the harness benchmarks through lm-eval, and greedy answers to the judged ones.
3. Judge every model's answers against the reference answers, in both orders.
4. Write the table (benchmarks.md, .json, .png), each run's own scores beside its weights, and rank
   a benchmarked sweep by a benchmark."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sdpo_exp.data.jsonl import write_json
from sdpo_exp.evaluation.benchmarks import harness, table
from sdpo_exp.evaluation.benchmarks.files import check_data, check_hub, is_demo_data
from sdpo_exp.evaluation.benchmarks.judging import early_judge, judge_suite, read_judged, reference_entry
from sdpo_exp.evaluation.benchmarks.models import resolve_models
from sdpo_exp.evaluation.benchmarks.notes import report_notes
from sdpo_exp.evaluation.benchmarks.punkt import ensure_punkt
from sdpo_exp.evaluation.benchmarks.registry import HARNESS, get_benchmark
from sdpo_exp.evaluation.benchmarks.results import run_metrics, write_run_summaries
from sdpo_exp.evaluation.benchmarks.suite import score_model, slug
from sdpo_exp.sweeps.summary import MARKDOWN, summarize
from sdpo_exp.tasks.context import RunContext

log = logging.getLogger(__name__)


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    suite = cfg.benchmark
    benches = [get_benchmark(str(name)) for name in suite.benchmarks]
    check_data(suite.data_dir, benches)
    on_harness = [b for b in benches if b.kind == HARNESS]
    if suite.data_dir is None:
        check_hub(on_harness)
    models = resolve_models(list(cfg.task.models), str(cfg.model.name), cfg.paths.output_root)
    judged = read_judged(cfg, [b for b in benches if b.kind != HARNESS])
    reference = reference_entry(cfg, models, judged)
    judge = early_judge(cfg, judged)
    if not ctx.is_main_process:
        log.info("task=benchmark runs in one process; this rank has nothing to do")
        return {}
    run_dir = Path(ctx.run_dir)
    if any(b.name == "ifeval" for b in on_harness):
        ensure_punkt(Path(cfg.paths.cache_dir) / "nltk_data")
    task_dir = None
    if on_harness and suite.data_dir is not None:
        task_dir = run_dir / "harness_tasks"
        harness.write_local_tasks(on_harness, suite.data_dir, task_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log.info("Benchmarks %s on %d model(s): %s", ", ".join(b.name for b in benches), len(models),
             "; ".join(m.label for m in models))  # fmt: skip

    results = []
    for k, entry in enumerate(models):
        log.info("Model %d/%d: %s", k + 1, len(models), entry.label)
        items = {name: j.items for name, j in judged.items()}
        results.append(score_model(cfg, entry, run_dir / "models" / slug(k, entry.label), on_harness, items,
                                   task_dir, device))  # fmt: skip

    labels = [m.label for m in models]
    cells = [
        c for b in on_harness for c in table.harness_cells(b, [r.harness[b.name] for r in results], labels)
    ]
    if judged:
        cells += judge_suite(cfg, run_dir, judged, models, results, reference, device, judge)
    notes = report_notes(cfg, benches, models, cells, reference)
    title = f"Benchmarks ({suite.name}{', demo items' if is_demo_data(suite.data_dir) else ''})"
    (run_dir / "benchmarks.md").write_text(table.markdown(cells, benches, labels, notes, title))
    write_json(run_dir / "benchmarks.json", {"models": [{"label": m.label, "path": str(m.path or "")} for m in models],
               "benchmarks": [b.name for b in benches], "cells": [c.to_json() for c in cells], "notes": notes})  # fmt: skip
    table.plot(cells, benches, labels, run_dir / "benchmarks.png", title)
    rank_by = str(cfg.task.rank_by or f"benchmark/{benches[0].name}")
    for sweep in write_run_summaries(models, cells, benches):
        summarize(sweep, metric=rank_by)
        log.info("Sweep %s ranked by %s: %s", sweep, rank_by, sweep / MARKDOWN)
    log.info(
        "Outputs: %s, %s, %s",
        run_dir / "benchmarks.md",
        run_dir / "benchmarks.json",
        run_dir / "benchmarks.png",
    )
    for line in table.verdicts(cells, benches, labels):
        log.info("Verdict: %s", line.removeprefix("- ").replace("**", ""))
    metrics = run_metrics(cells, benches, labels)
    ctx.log(metrics, step=0)
    return metrics
