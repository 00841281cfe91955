"""Heatmaps and the token page, from a signals.json-shaped document with known values."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread
from signal_support import synthetic_document

from sdpo_exp.signal.colors import advantage_hex
from sdpo_exp.signal.heatmap import advantage_matrix, color_limit, plot_heatmap, plot_side_by_side
from sdpo_exp.signal.html import render_tokens_html


@pytest.fixture()
def document() -> dict:
    return synthetic_document()


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0


def test_colour_scale_blue_positive_red_negative_white_zero():
    blue, red, zero = (_rgb(advantage_hex(v, 1.0)) for v in (1.0, -1.0, 0.0))
    assert blue[2] > blue[0] + 0.2 and red[0] > red[2] + 0.2
    assert zero.min() > 0.9  # near white
    assert advantage_hex(5.0, 1.0) == advantage_hex(1.0, 1.0)  # clipped at the limit


def test_matrix_and_limit(document):
    matrix = advantage_matrix(document, "followup")
    lengths = [len(c["tokens"]) for c in document["cases"]]
    assert matrix.shape == (len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        assert np.isfinite(matrix[i, :n]).all() and np.isnan(matrix[i, n:]).all()
    assert advantage_matrix(document, "followup", max_tokens=5).shape[1] == 5
    limit = color_limit(document)
    assert 2.5 < limit <= 3.0  # the 98th percentile of |A|, dominated by the relevant follow-up
    zeros = {
        "cases": [
            {
                **c,
                "advantages_followup": [0.0] * len(c["tokens"]),
                "advantages_unrelated": [0.0] * len(c["tokens"]),
            }
            for c in document["cases"]
        ]
    }
    assert color_limit(zeros) == 1.0


def _colour_fractions(image: np.ndarray) -> tuple[float, float]:
    rgb = image[..., :3]
    blue = ((rgb[..., 2] - rgb[..., 0]) > 0.15).mean()
    red = ((rgb[..., 0] - rgb[..., 2]) > 0.15).mean()
    return float(blue), float(red)


def test_heatmaps_are_nontrivial_images(document, tmp_path):
    limit = color_limit(document)
    paths = [
        plot_heatmap(document, "followup", tmp_path / "f.png", limit),
        plot_heatmap(document, "unrelated", tmp_path / "u.png", limit),
        plot_side_by_side(document, tmp_path / "s.png", limit),
    ]
    images = [imread(p) for p in paths]
    for image in images:
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05
    blue_f, red_f = _colour_fractions(images[0])
    blue_u, red_u = _colour_fractions(images[1])
    # strong values on the relevant follow-up, near-white cells on the unrelated one (shared scale)
    assert blue_f > 0.03 and red_f > 0.03
    assert blue_u < blue_f / 5 and red_u < red_f / 5
    assert images[2].shape[1] > images[0].shape[1]  # two panels


class _Spans(HTMLParser):
    def __init__(self):
        super().__init__()
        self.spans, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "t":
            self.spans.append(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.external.append(attrs[key])


def test_tokens_html_content(document):
    page = render_tokens_html(document, limit=3.0)
    parser = _Spans()
    parser.feed(page)
    assert not parser.external and "<script" not in page and "http" not in page  # self-contained
    n_tokens = sum(len(c["tokens"]) for c in document["cases"])
    assert len(parser.spans) == 2 * n_tokens  # every token under both follow-ups
    first = document["cases"][0]
    a = first["advantages_followup"][1]
    assert parser.spans[1]["title"].startswith(f"A = {a:+.4f}")
    assert advantage_hex(a, 3.0) in parser.spans[1]["style"]
    for case in document["cases"]:
        assert f"<q>{case['followup']}</q>" in page and f"<q>{case['unrelated']}</q>" in page
    assert "Prompt &lt;b&gt;0&lt;/b&gt; &amp; more" in page  # prompt shown, escaped
    assert re.search(r'data-followup="unrelated"', page)


def test_html_and_plots_handle_an_empty_completion_list():
    document = synthetic_document(n_cases=1, length=1)
    assert 'class="t"' in render_tokens_html(document, 1.0)


@pytest.mark.parametrize("which", ["followup", "unrelated"])
def test_case_ids_on_axis(document, tmp_path, which):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401  (the backend the module uses)

    path = plot_heatmap(document, which, tmp_path / "h.png", 3.0, max_tokens=10)
    assert path.stat().st_size > 5000


def test_short_heatmaps_show_token_text_and_every_figure_names_its_run(document):
    from matplotlib.figure import Figure

    from sdpo_exp.signal.heatmap import TEXT_TOKENS, _caption, _token_text

    width = advantage_matrix(document, "followup").shape[1]
    assert width <= TEXT_TOKENS
    text = _token_text(document, width)
    assert text[0][: len(document["cases"][0]["tokens"])] == [
        t.replace("\n", "⏎").strip() or "␣" for t in document["cases"][0]["tokens"]
    ]
    assert _token_text(document, TEXT_TOKENS + 1) is None  # too wide: position labels only
    document = {**document, "meta": {"model": {"name": "smollm2_135m"}, "template": "paper", "seed": 7}}
    fig = Figure()
    _caption(fig, document)
    assert fig.get_supxlabel() == "model smollm2_135m · hindsight template paper · seed 7"
