"""What a benchmark table's numbers are: where the items came from, which scores are on a subset, what
departs from the paper's protocol, who judged, and so which numbers compare with the paper's."""

from __future__ import annotations

from omegaconf import DictConfig

from sdpo_exp.evaluation.benchmarks.files import is_demo_data
from sdpo_exp.evaluation.benchmarks.models import ModelEntry
from sdpo_exp.evaluation.benchmarks.registry import HARNESS, Benchmark
from sdpo_exp.evaluation.benchmarks.table import Cell


def report_notes(
    cfg: DictConfig, benches: list[Benchmark], models: list[ModelEntry], cells: list[Cell], reference: object
) -> list[str]:
    suite = cfg.benchmark
    demo = is_demo_data(suite.data_dir)
    notes = []
    if demo:
        notes.append(
            f"**Demo items.** The files in {suite.data_dir} were written for this project in each benchmark's "
            "own format; they are not the benchmarks' items, and these scores say nothing about the benchmarks."
        )
    else:
        notes.append(
            f"Data: {'the Hugging Face hub' if suite.data_dir is None else f'local copies in {suite.data_dir}'}."
        )
    subset = sorted({c.benchmark for c in cells if c.available and c.n < c.available and not c.reference})
    if subset:
        notes.append(
            f"**Subset**: benchmark.limit={suite.limit} keeps the first items of {', '.join(subset)}."
        )
    departures = []
    if suite.max_gen_toks:
        departures.append(
            f"generation capped at {suite.max_gen_toks} tokens (the harness: IFEval 1,280, MMLU-Pro 2,048)"
        )
    if not suite.apply_chat_template:
        departures.append("no chat template")
    harness = [b for b in benches if b.kind == HARNESS]
    if harness:
        protocol = "".join(f"\n  - {b.title}: {b.paper}" for b in harness)
        notes.append(
            "Harness benchmarks: EleutherAI's lm-evaluation-harness, its own tasks and scoring"
            + (f"; departures from its protocol: {'; '.join(departures)}" if departures else "")
            + f". The paper's protocol:{protocol}"
        )
    judged = [b for b in benches if b.kind != HARNESS]
    if judged:
        from sdpo_exp.evaluation.benchmarks.judging import judge_label, reference_label

        ref = reference_label(reference, models)  # type: ignore[arg-type]
        notes.append(
            f"Judged benchmarks ({', '.join(b.title for b in judged)}): win rate of each model's greedy answers "
            f"(up to {suite.judged.max_new_tokens} tokens) against {ref}, judged by {judge_label(cfg)}, every pair "
            "in both orders (a disagreement or C is a tie; win rate = wins / (wins + losses), analytic SE). "
            "**Not comparable to the public leaderboard**: neither the official judge nor the official "
            "reference answers were used; exports/ holds the answers in AlpacaEval's and arena-hard-auto's "
            "formats for their own tools."
        )
    comparable = [b.title for b in harness if not demo and not departures and b.name not in subset]
    why = [w for w, on in (("demo items", demo), ("subsets", subset), ("departures above", departures)) if on]
    notes.append(
        "Comparable to the paper's numbers (same harness task and protocol, on the paper's models): "
        + (", ".join(comparable) if comparable else "none of these scores")
        + (f" ({', '.join(why)})" if why else "")
        + "; the judged win rates never are."
    )
    notes.append("Models: " + "; ".join(f"{m.label} = {m.path or cfg.model.name}" for m in models) + ".")
    return notes
