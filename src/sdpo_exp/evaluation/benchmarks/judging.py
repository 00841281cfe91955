"""The judged benchmarks of a run: their items (local file or hub), the reference answers each
model's answers are judged against, and the judging itself, with every verdict kept and the answers
exported in AlpacaEval's and arena-hard-auto's formats for their official judges."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sdpo_exp.data.jsonl import AtomicJsonlWriter
from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.benchmarks import export, table
from sdpo_exp.evaluation.benchmarks.files import local_files
from sdpo_exp.evaluation.benchmarks.judged import (
    JudgedItems,
    judge_benchmark,
    make_benchmark_judge,
    read_items,
)
from sdpo_exp.evaluation.benchmarks.models import ModelEntry, resolve_models
from sdpo_exp.evaluation.benchmarks.registry import Benchmark
from sdpo_exp.evaluation.benchmarks.suite import ModelResult, score_model, slug
from sdpo_exp.evaluation.report import pct
from sdpo_exp.evaluation.winrate import Outcome
from sdpo_exp.users.judge import Judge
from sdpo_exp.users.profiles import UserProfile

log = logging.getLogger(__name__)

FIRST, FILE = "first", "file"


@dataclass(frozen=True)
class Judged:
    bench: Benchmark
    source: JudgedItems

    @property
    def items(self) -> list[Any]:
        return self.source.items


def _hub_file(bench: Benchmark, cache_dir: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(bench.hub_id, str(bench.hub_file), repo_type="dataset",
                                    cache_dir=str(Path(cache_dir) / "hub")))  # fmt: skip
    except Exception as exc:  # offline, or the hub refused
        raise ConfigError(
            f"benchmark {bench.name}: cannot read {bench.hub} from the hub ({str(exc).splitlines()[0][:160]}); "
            "download it where there is a network and set benchmark.data_dir"
        ) from None


def read_judged(cfg: DictConfig, benches: list[Benchmark]) -> dict[str, Judged]:
    """Each judged benchmark's items; bad rows skipped and counted (logged)."""
    out = {}
    for bench in benches:
        data_dir = cfg.benchmark.data_dir
        path = (
            local_files(data_dir, bench)["eval"]
            if data_dir is not None
            else _hub_file(bench, cfg.paths.cache_dir)
        )
        source = read_items(bench, path, cfg.benchmark.limit)
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(source.skipped.items()))
        log.info(
            "%s: %d items from %s%s",
            bench.name,
            len(source.items),
            path,
            f" (skipped: {skipped})" if skipped else "",
        )
        out[bench.name] = Judged(bench, source)
    return out


def reference_entry(
    cfg: DictConfig, models: list[ModelEntry], judged: dict[str, Judged]
) -> str | ModelEntry | None:
    """FIRST, FILE, or the reference model; checked before any model loads."""
    if not judged:
        return None
    choice = str(cfg.benchmark.judged.reference)
    if choice == FIRST:
        if len(models) < 2:
            log.warning("benchmark.judged.reference=first with one model: the judged benchmarks have "
                        "nothing to compare it with (add a model, or reference=file)")  # fmt: skip
        return FIRST
    if choice == FILE:
        for j in judged.values():
            missing = [i.id for i in j.items if not (i.reference or "").strip()]
            if missing:
                raise ConfigError(
                    f"benchmark.judged.reference=file: {j.bench.name}'s file has no reference answer for "
                    f"{len(missing)} item(s) (e.g. {missing[0]}); use reference=first or a model directory"
                )
        return FILE
    entries = resolve_models([choice], str(cfg.model.name), cfg.paths.output_root)
    if len(entries) != 1:
        raise ConfigError(f"benchmark.judged.reference={choice} names {len(entries)} models; name one")
    return entries[0]


def _reference_answers(cfg: DictConfig, run_dir: Path, judged: dict[str, Judged], results: list[ModelResult],
                       reference: str | ModelEntry, device: torch.device) -> dict[str, list[str]]:  # fmt: skip
    if reference == FIRST:
        return {name: results[0].answers[name] for name in judged}
    if reference == FILE:
        return {name: [str(i.reference) for i in j.items] for name, j in judged.items()}
    assert isinstance(reference, ModelEntry)
    log.info("Reference model %s: answers to the judged benchmarks", reference.label)
    items = {name: j.items for name, j in judged.items()}
    return score_model(cfg, reference, run_dir / "reference", [], items, None, device).answers


def reference_label(reference: str | ModelEntry, models: list[ModelEntry]) -> str:
    if reference == FIRST:
        return f"the answers of {models[0].label}"
    return "the reference answers in the file" if reference == FILE else f"the answers of {reference.label}"  # type: ignore[union-attr]


def judge_label(cfg: DictConfig) -> str:
    from sdpo_exp.evaluation.benchmarks.judged import judge_label as label

    return label(cfg.judge, UserProfile.from_config(cfg.user_profile))


def early_judge(cfg: DictConfig, judged: dict[str, Judged]) -> Judge | None:
    """The judge, built before any model loads where that costs nothing (the rule-based judge, an
    API), so that a profile without rules or a missing API key fails at once; a local model judge
    is built after the models are scored (None)."""
    backend = str(getattr(cfg.judge.backend, "value", cfg.judge.backend))
    if not judged or backend not in ("rule_based", "anthropic"):
        return None
    return make_benchmark_judge(cfg.judge, UserProfile.from_config(cfg.user_profile), cfg.paths.cache_dir)


def judge_suite(cfg: DictConfig, run_dir: Path, judged: dict[str, Judged], models: list[ModelEntry],
                results: list[ModelResult], reference: str | ModelEntry | None,
                device: torch.device, judge: Judge | None = None) -> list[table.Cell]:  # fmt: skip
    """Every model's answers judged against the reference answers; verdicts under judged/<benchmark>/,
    exports under exports/."""
    assert reference is not None
    references = _reference_answers(cfg, run_dir, judged, results, reference, device)
    if judge is None:
        profile = UserProfile.from_config(cfg.user_profile)
        judge = make_benchmark_judge(cfg.judge, profile, cfg.paths.cache_dir, device)
    labels = [m.label for m in models]
    bootstrap = int(cfg.benchmark.judged.bootstrap_samples)
    cells: list[table.Cell] = []
    for name, j in judged.items():
        folder = run_dir / "judged" / name
        with AtomicJsonlWriter(folder / "reference.jsonl") as out:
            for item, answer in zip(j.items, references[name], strict=True):
                out.write({"id": item.id, "prompt": item.prompt, "reference": answer})
        outcomes: list[list[Outcome] | None] = []
        rates: list[Any] = []
        for k, (entry, result) in enumerate(zip(models, results, strict=True)):
            answers = result.answers[name]
            if reference == FIRST and k == 0:
                outcomes.append(None)
                rates.append(None)
                continue
            records, rate = judge_benchmark(
                judge, j.items, answers, references[name], bootstrap, int(cfg.seed)
            )
            with AtomicJsonlWriter(folder / f"{slug(k, entry.label)}.jsonl") as out:
                for record in records:
                    out.write(record)
            outcomes.append([Outcome(r["outcome"]) for r in records])
            rates.append(rate)
            log.info("%s, %s: win rate %s (%d won, %d lost, %d tied) against %s", name, entry.label, pct(rate.win_rate),
                     rate.wins, rate.losses, rate.ties, reference_label(reference, models))  # fmt: skip
        cells += table.judged_cells(
            j.bench, outcomes, rates, labels, j.source.available, bootstrap, int(cfg.seed)
        )
    for k, (entry, result) in enumerate(zip(models, results, strict=True)):
        _export(run_dir, judged, result, slug(k, entry.label), entry.label)
    return cells


def _export(run_dir: Path, judged: dict[str, Judged], result: ModelResult, name: str, label: str) -> None:
    """exports/alpaca_eval/<model>.json (`alpaca_eval --model_outputs`) and
    exports/arena_hard/model_answer/<model>.jsonl (arena-hard-auto's answer file, every category)."""
    arena_items: list[Any] = []
    arena_answers: list[str] = []
    for bench_name, j in judged.items():
        if bench_name == "alpaca_eval":
            path = run_dir / "exports" / "alpaca_eval" / f"{name}.json"
            export.write_alpaca_eval(path, j.items, result.answers[bench_name], label)
        else:
            arena_items += j.items
            arena_answers += result.answers[bench_name]
    if arena_items:
        path = run_dir / "exports" / "arena_hard" / "model_answer" / f"{name}.jsonl"
        export.write_arena_hard(path, arena_items, arena_answers, name)
