"""`winrate.png`: win rate against interactions, with standard-error bands and the profile switches."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_winrate(
    rows: Sequence[dict[str, Any]],
    switch_points: Sequence[int],
    path: Path,
    title: str,
    oracle: Sequence[dict[str, Any]] = (),
) -> Path:
    """One line per (profile, baseline) over `interactions`, a band of +-1 analytic SE, dashed lines at
    the switch points, 50% dotted; the in-context oracle's win rate per profile as a dash-dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        series[(row["profile"], row["baseline"])].append(row)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for (profile, baseline), points in sorted(series.items()):
        points = sorted(points, key=lambda r: r["interactions"])
        xs = [p["interactions"] for p in points]
        ys = [p["win_rate"] if p["win_rate"] is not None else math.nan for p in points]
        se = [p["se"] if p["se"] is not None else 0.0 for p in points]
        label = profile if baseline == "base" else f"{profile} vs {baseline}"
        (line,) = ax.plot(xs, ys, marker="o", label=label)
        lo = [y - s if math.isfinite(y) else math.nan for y, s in zip(ys, se, strict=True)]
        hi = [y + s if math.isfinite(y) else math.nan for y, s in zip(ys, se, strict=True)]
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    oracle_lines(ax, oracle)
    for x in switch_points:
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
    return save_winrate_figure(fig, ax, path, title, "win rate against the baseline", "best")


def save_winrate_figure(fig: Any, ax: Any, path: Path, title: str, ylabel: str, legend: str) -> Path:
    """The common finish of a win-rate plot: 50% dotted, the axes, the legend; written to `path`."""
    import matplotlib.pyplot as plt

    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("interactions")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def oracle_lines(ax: Any, oracle: Sequence[dict[str, Any]]) -> None:
    """The in-context oracle's win rate per profile: a dash-dotted line with a +-1 SE band."""
    for row in oracle:
        if row.get("win_rate") is None:
            continue
        y, se = float(row["win_rate"]), float(row.get("se") or 0.0)
        line = ax.axhline(
            y, color="black", linestyle="-.", linewidth=1, label=f"in-context oracle ({row['profile']})"
        )
        ax.axhspan(y - se, y + se, color=line.get_color(), alpha=0.06)


def plot_heatmap(rows: Sequence[dict[str, Any]], models: Sequence[str], profiles: Sequence[str], path: Path,
                 title: str) -> Path:  # fmt: skip
    """Models x profiles, coloured by win rate (grey where no pair was decided), values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by = {(r["model"], r["profile"]): r["win_rate"] for r in rows}
    grid = np.array(
        [[by.get((m, p)) if by.get((m, p)) is not None else np.nan for p in profiles] for m in models]
    )
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(profiles), 1.2 + 0.5 * len(models)), dpi=120)
    cmap = matplotlib.colormaps["RdBu"].copy()
    cmap.set_bad("#dddddd")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i in range(len(models)):
        for j in range(len(profiles)):
            v = grid[i, j]
            ax.text(j, i, "n/a" if np.isnan(v) else f"{100 * v:.0f}%", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(profiles)), profiles, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), [Path(m).name or m for m in models], fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
