"""The diverging colour scale shared by the heatmaps and the token page: blue positive, red negative,
white at zero; positions after a completion's end are light grey."""

from __future__ import annotations

import matplotlib
from matplotlib.colors import Colormap, to_hex

CMAP_NAME = "RdBu"  # low (negative) = red, high (positive) = blue
MISSING_COLOR = "#c8c8c8"  # darker than the near-white of zero, so a short completion is visible


def advantage_cmap() -> Colormap:
    return matplotlib.colormaps[CMAP_NAME].with_extremes(bad=MISSING_COLOR)


def advantage_hex(value: float, limit: float) -> str:
    """The colour of an advantage on the scale [-limit, limit] (values beyond are clipped)."""
    if limit <= 0:
        raise ValueError(f"the colour limit must be positive, got {limit}")
    position = 0.5 + 0.5 * max(-1.0, min(1.0, value / limit))
    return to_hex(matplotlib.colormaps[CMAP_NAME](position))


def text_color(value: float, limit: float) -> str:
    """Black on light cells, white on dark ones."""
    return "#ffffff" if abs(value) > 0.7 * limit else "#111111"
