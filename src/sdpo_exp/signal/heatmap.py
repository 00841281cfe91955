"""Heatmaps of per-token advantages: cases x token positions, blue positive, red negative.

All figures of one run share a symmetric colour scale centred at zero, so that the relevant and the
unrelated follow-up can be compared by eye. Drawn with matplotlib's object API (no pyplot, no global
backend state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from sdpo_exp.signal.colors import advantage_cmap

TITLES = {"followup": "relevant follow-up", "unrelated": "unrelated follow-up"}


def color_limit(document: dict[str, Any], percentile: float = 98.0) -> float:
    """The half-width of the shared colour scale: a high percentile of |A| over every token of both
    follow-ups (so that one extreme token does not wash out the rest); 1.0 when all are zero."""
    values = [abs(v) for case in document["cases"] for which in TITLES for v in case[f"advantages_{which}"]]
    if not values:
        return 1.0
    limit = float(np.percentile(values, percentile))
    return limit if limit > 0 else (max(values) or 1.0)


def advantage_matrix(document: dict[str, Any], which: str, max_tokens: int | None = None) -> np.ndarray:
    """(cases, positions) with NaN after each completion's end."""
    rows = [case[f"advantages_{which}"] for case in document["cases"]]
    width = max((len(r) for r in rows), default=0)
    if max_tokens is not None:
        width = min(width, max_tokens)
    matrix = np.full((len(rows), max(width, 1)), np.nan)
    for i, row in enumerate(rows):
        row = row[:width]
        matrix[i, : len(row)] = row
    return matrix


def _case_labels(document: dict[str, Any]) -> list[str]:
    return [f"{case['id']} ({case.get('kind', '?')})" for case in document["cases"]]


# Token text is written into the cells when the heatmap is at most this many tokens wide.
TEXT_TOKENS = 80


def _token_text(document: dict[str, Any], width: int) -> list[list[str]] | None:
    if width > TEXT_TOKENS:
        return None
    return [
        [t.replace("\n", "⏎").strip() or "␣" for t in case.get("tokens", [])[:width]]
        for case in document["cases"]
    ]


def _draw(
    ax: Axes, matrix: np.ndarray, cmap: Colormap, norm: Normalize, title: str, tokens: list[list[str]] | None
) -> Any:
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_yticks(range(matrix.shape[0]))
    ax.tick_params(axis="y", labelsize=8)
    width = matrix.shape[1]
    step = max(1, int(np.ceil(width / 30)))  # at most about 30 position labels
    ax.set_xticks(range(0, width, step))
    ax.tick_params(axis="x", labelsize=7)
    if tokens is None:
        ax.set_xlabel("completion token position (hover the cells of tokens.html for the token text)")
        return image
    ax.set_xlabel("completion token position; each cell shows its token")
    for row, case_tokens in enumerate(tokens):
        for col, text in enumerate(case_tokens):
            ax.text(col, row, text[:8], ha="center", va="center", fontsize=4.5, rotation=90, color="black")
    return image


def _caption(fig: Figure, document: dict[str, Any]) -> None:
    """Which run the figure shows: model, hindsight template, seed (from signals.json's meta)."""
    meta = document.get("meta", {})
    model = meta.get("model", {})
    name = model.get("name", "?") if isinstance(model, dict) else str(model)
    fig.supxlabel(f"model {name} · hindsight template {meta.get('template', '?')} · seed {meta.get('seed', '?')}",
                  fontsize=8)  # fmt: skip


def _mean_abs(document: dict[str, Any], which: str) -> float:
    values = [abs(v) for case in document["cases"] for v in case[f"advantages_{which}"]]
    return float(np.mean(values)) if values else 0.0


def _figure(width_tokens: int, n_cases: int, panels: int) -> Figure:
    per_token = 0.16 if width_tokens <= TEXT_TOKENS else 0.07  # room for the token text
    width = min(4.0 + panels * max(3.0, per_token * width_tokens), 22.0 if panels == 1 else 30.0)
    height = 1.6 + 0.32 * max(n_cases, 1)
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _colorbar(fig: Figure, image: Any, axes: Any, matrix_max: float, limit: float) -> None:
    extend = "both" if matrix_max > limit else "neither"
    bar = fig.colorbar(image, ax=axes, extend=extend, fraction=0.05, pad=0.02)
    bar.set_label("advantage A (blue +, red -)", fontsize=9)


def plot_heatmap(
    document: dict[str, Any], which: str, path: Path, limit: float, max_tokens: int | None = None
) -> Path:
    """One heatmap (`which` is "followup" or "unrelated") written as a PNG."""
    matrix = advantage_matrix(document, which, max_tokens)
    cmap, norm = advantage_cmap(), Normalize(vmin=-limit, vmax=limit)
    fig = _figure(matrix.shape[1], matrix.shape[0], panels=1)
    ax = fig.add_subplot(1, 1, 1)
    title = f"Per-token advantages, {TITLES[which]} (mean |A| = {_mean_abs(document, which):.3f})"
    image = _draw(ax, matrix, cmap, norm, title, _token_text(document, matrix.shape[1]))
    ax.set_yticklabels(_case_labels(document))
    _colorbar(fig, image, ax, float(np.nanmax(np.abs(matrix), initial=0.0)), limit)
    _caption(fig, document)
    FigureCanvasAgg(fig).print_png(str(path))
    return path


def plot_side_by_side(
    document: dict[str, Any], path: Path, limit: float, max_tokens: int | None = None
) -> Path:
    """Both heatmaps next to each other, same rows, one colour bar."""
    matrices = {which: advantage_matrix(document, which, max_tokens) for which in TITLES}
    cmap, norm = advantage_cmap(), Normalize(vmin=-limit, vmax=limit)
    width = max(m.shape[1] for m in matrices.values())
    fig = _figure(width, len(document["cases"]), panels=2)
    axes = fig.subplots(1, 2, sharey=True)
    image = None
    for ax, (which, matrix) in zip(axes, matrices.items(), strict=True):
        title = f"{TITLES[which]} (mean |A| = {_mean_abs(document, which):.3f})"
        image = _draw(ax, matrix, cmap, norm, title, _token_text(document, matrix.shape[1]))
    axes[0].set_yticklabels(_case_labels(document))
    top = max(float(np.nanmax(np.abs(m), initial=0.0)) for m in matrices.values())
    _colorbar(fig, image, list(axes), top, limit)
    _caption(fig, document)
    FigureCanvasAgg(fig).print_png(str(path))
    return path
