"""The benchmark table (the shape of the paper's Table 2): one row per benchmark and metric, a column
per model, each later model's difference to the first with its standard error; and the verdict.

Harness scores: the harness's aggregate, its SE from the logged items (sample SD / sqrt(n)), the
difference to the first model paired item by item (SE of the mean per-item difference). Judged
scores: a win rate against the reference answers with its analytic SE; against the first model's
answers the first model is the reference itself, otherwise the difference of two win rates is
bootstrapped pairing the items (`evaluation.paired`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdpo_exp.evaluation.benchmarks.harness import HarnessScore, flat_values, item_values, mean_se
from sdpo_exp.evaluation.benchmarks.registry import Benchmark
from sdpo_exp.evaluation.paired import paired_comparison
from sdpo_exp.evaluation.winrate import Outcome

SIGNIFICANT = 1.96  # |difference| above this many SEs is marked


@dataclass
class Cell:
    """One model's score on one benchmark metric."""

    benchmark: str
    metric: str
    model: str
    value: float | None
    se: float | None
    n: int  # items (pairs for judged)
    available: int  # items before `limit`
    diff: float | None = None  # this model - the first model
    diff_se: float | None = None
    reference: bool = False  # judged against this model's own answers
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def paired_diff(
    first: HarnessScore, other: HarnessScore, metric: str
) -> tuple[float | None, float | None, int]:
    """Mean and SE of the per-item difference other - first over the items both have."""
    a, b = first.items[metric], other.items[metric]
    diffs: list[float] = []
    for key in sorted(set(a) & set(b)):
        va, vb = flat_values(a[key]), flat_values(b[key])
        if len(va) == len(vb):
            diffs += [y - x for x, y in zip(va, vb, strict=True)]
    if not diffs:
        return None, None, 0
    return sum(diffs) / len(diffs), _finite(mean_se(diffs)), len(diffs)


def harness_cells(bench: Benchmark, scores: list[HarnessScore], labels: list[str]) -> list[Cell]:
    cells = []
    for metric in bench.metrics:
        for k, (score, label) in enumerate(zip(scores, labels, strict=True)):
            cell = Cell(bench.name, metric, label, score.scores[metric], _finite(mean_se(item_values(score, metric))),
                        score.n, score.available)  # fmt: skip
            if k:
                cell.diff, cell.diff_se, _ = paired_diff(scores[0], score, metric)
            cells.append(cell)
    return cells


def judged_cells(bench: Benchmark, outcomes: list[list[Outcome] | None], rates: list[Any], labels: list[str],
                 available: int, bootstrap_samples: int, seed: int) -> list[Cell]:  # fmt: skip
    """`outcomes[k]`/`rates[k]`: model k's per-item outcomes and WinRate, None for the reference."""
    cells = []
    for k, (label, rate) in enumerate(zip(labels, rates, strict=True)):
        if rate is None:
            cells.append(Cell(bench.name, bench.metric, label, None, None, 0, available, reference=True))
            continue
        cell = Cell(bench.name, bench.metric, label, _finite(rate.win_rate), _finite(rate.se), rate.pairs, available,
                    extra={"wins": rate.wins, "losses": rate.losses, "ties": rate.ties, "invalid": rate.invalid,
                           "coverage": _finite(rate.coverage), "bootstrap_se": _finite(rate.bootstrap_se)})  # fmt: skip
        if k and outcomes[0] is None:  # judged against the first model: its win rate's distance from 50%
            cell.diff = None if cell.value is None else cell.value - 0.5
            cell.diff_se = cell.se
        elif k and outcomes[0] is not None and outcomes[k] is not None:
            paired = paired_comparison(outcomes[k], outcomes[0], bootstrap_samples, seed)
            cell.diff, cell.diff_se = _finite(paired.diff), _finite(paired.bootstrap_se)
        cells.append(cell)
    return cells


def significant(diff: float | None, se: float | None) -> bool:
    """|diff| beyond 1.96 SE (a nonzero difference with SE 0, every item moving alike, counts)."""
    return diff is not None and se is not None and abs(diff) > SIGNIFICANT * se


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _cell_text(cell: Cell) -> str:
    if cell.reference:
        return "reference"
    text = f"{_pct(cell.value)} ± {_pct(cell.se)}"
    if cell.diff is not None:
        mark = " *" if significant(cell.diff, cell.diff_se) else ""
        text += f" ({'+' if cell.diff >= 0 else ''}{_pct(cell.diff)} ± {_pct(cell.diff_se)}{mark})"
    return text


def verdicts(cells: list[Cell], benches: list[Benchmark], labels: list[str]) -> list[str]:
    """For each later model: on which headline metrics it is above / below the first by > 1.96 SE."""
    heads = {b.name: b.metric for b in benches}
    out = []
    for label in labels[1:]:
        up, down, level = [], [], []
        for c in cells:
            if c.model != label or heads.get(c.benchmark) != c.metric or c.diff is None:
                continue
            name = next(b.title for b in benches if b.name == c.benchmark)
            if significant(c.diff, c.diff_se):
                (up if c.diff > 0 else down).append(name)
            else:
                level.append(name)
        words = []
        if up:
            words.append(f"better on {', '.join(up)}")
        if down:
            words.append(f"worse on {', '.join(down)}")
        if level:
            words.append(f"within 1.96 SE on {', '.join(level)}")
        out.append(f"- **{label}** against {labels[0]}: " + ("; ".join(words) or "no comparable score") + ".")
    return out


def markdown(
    cells: list[Cell], benches: list[Benchmark], labels: list[str], notes: list[str], title: str
) -> str:
    by = {(c.benchmark, c.metric, c.model): c for c in cells}
    lines = [f"# {title}", ""]
    if len(labels) > 1:
        lines += ["## Verdict", "", *verdicts(cells, benches, labels), ""]
    lines += [
        "## Scores",
        "",
        "Percent ± standard error; in brackets each model's difference to the first model ± its SE, "
        "paired item by item (* beyond 1.96 SE). A win rate judged against the first model's own answers "
        "is itself the comparison: its bracket is the distance from 50%.",
        "",
        "| benchmark | metric | items | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    for bench in benches:
        for metric in bench.metrics:
            row = [by.get((bench.name, metric, label)) for label in labels]
            present = [c for c in row if c is not None]
            if not present:
                continue
            n = max(c.n for c in present)
            available = max(c.available for c in present)
            items = f"{n}" if not available or n >= available else f"{n} of {available} (subset)"
            name = bench.title if metric == bench.metric else ""
            lines.append(
                f"| {name} | {metric} | {items} | "
                + " | ".join("" if c is None else _cell_text(c) for c in row)
                + " |"
            )
    lines += ["", "## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def plot(
    cells: list[Cell], benches: list[Benchmark], labels: list[str], path: Path, title: str = "Benchmarks"
) -> None:
    """Headline metric per benchmark, one bar per model, SE as error bars; a judged benchmark's
    reference model marked as such, with the 50% line of its win rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    heads = {b.name: b.metric for b in benches}
    by = {(c.benchmark, c.model): c for c in cells if c.metric == heads[c.benchmark]}
    x = np.arange(len(benches))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(benches) + 1.5), 4.2))
    for k, label in enumerate(labels):
        offsets = x + (k - (len(labels) - 1) / 2) * width
        values = [by.get((b.name, label)) for b in benches]
        heights = [100 * c.value if c is not None and c.value is not None else 0 for c in values]
        errors = [100 * c.se if c is not None and c.se is not None else 0 for c in values]
        ax.bar(offsets, heights, width, yerr=errors, capsize=3, label=label)
        for pos, c in zip(offsets, values, strict=True):
            if c is not None and c.reference:
                ax.text(pos, 2, "reference", rotation=90, ha="center", va="bottom", fontsize=7)
    for i, b in enumerate(benches):
        if any(c.reference for c in cells if c.benchmark == b.name):
            ax.hlines(50, i - 0.45, i + 0.45, colors="grey", linestyles="dashed", linewidth=1)
    ax.set_xticks(x, [f"{b.title}\n({b.metric})" for b in benches], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: score ± SE (judged: win rate against the reference)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
