"""`tokens.html`: each case's completion as coloured tokens under both follow-ups, one self-contained page.

No script, no external resource: inline CSS only, so the page opens offline in any browser. The value
of a token shows on hover (the `title` attribute); the prompt and both follow-ups are shown above the
tokens they explain.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from sdpo_exp.signal.colors import MISSING_COLOR, advantage_hex, text_color

FOLLOWUP_LABELS = {"followup": "Relevant follow-up", "unrelated": "Unrelated follow-up"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1100px; padding: 0 16px; color: #111; background: #fff; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin: 0 0 6px 0; }
table.meta { border-collapse: collapse; font-size: 0.85em; margin-bottom: 12px; }
table.meta td { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
section.case { border: 1px solid #ccc; border-radius: 6px; padding: 12px 16px; margin: 18px 0; }
.kind { font-size: 0.8em; color: #555; font-weight: normal; }
.msg { font-size: 0.9em; margin: 4px 0; white-space: pre-wrap; }
.role { font-weight: bold; color: #444; }
.fu { margin: 12px 0 4px 0; font-size: 0.9em; }
.fu q { font-style: italic; }
.tokens { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em; white-space: pre-wrap;
          word-break: break-word; border: 1px solid #eee; padding: 6px; border-radius: 4px; }
.t { border-radius: 2px; padding: 1px 0; }
.t:hover { outline: 2px solid #222; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 0.85em; margin: 8px 0 16px 0; }
.bar { width: 320px; height: 14px; border: 1px solid #999; }
.stat { color: #555; font-size: 0.85em; }
"""


def _value(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _visible(token: str) -> str:
    if token == "":
        return "\u00b7"  # a byte token that completes no character on its own
    return escape(token.replace("\n", "\u21b5\n"))


def _token_spans(case: dict[str, Any], which: str, limit: float) -> str:
    advantages = case[f"advantages_{which}"]
    student = case.get("student_logprobs") or [None] * len(advantages)
    teacher = case.get(f"teacher_logprobs_{which}") or [None] * len(advantages)
    ids = case.get("completion_token_ids") or [None] * len(advantages)
    spans = []
    for position, (token, a, s, t, token_id) in enumerate(
        zip(case["tokens"], advantages, student, teacher, ids, strict=True)
    ):
        a = _value(a)
        tip = f"A = {a:+.4f}\nposition {position}, id {token_id}, token {json.dumps(token)}"
        if s is not None and t is not None:
            tip += f"\nlog p teacher {_value(t):.4f}, log p student {_value(s):.4f}"
        color = advantage_hex(a, limit) if a == a else MISSING_COLOR
        spans.append(
            f'<span class="t" style="background:{color};color:{text_color(a, limit)}" '
            f'title="{escape(tip)}">{_visible(token)}</span>'
        )
    return "".join(spans)


def _prompt(case: dict[str, Any]) -> str:
    prompt = case.get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    lines = []
    for message in prompt or []:
        lines.append(
            f'<div class="msg"><span class="role">{escape(message["role"])}:</span> '
            f"{escape(message['content'])}</div>"
        )
    return "".join(lines)


def _mean_abs(values: list[Any]) -> float:
    values = [abs(_value(v)) for v in values]
    return sum(values) / len(values) if values else 0.0


def _case_section(case: dict[str, Any], limit: float) -> str:
    source = case.get("completion_source", "")
    parts = [
        '<section class="case">',
        f'<h2>{escape(case["id"])} <span class="kind">{escape(str(case.get("kind", "")))}'
        f"{', ' + escape(source) + ' completion' if source else ''}"
        f", {len(case['tokens'])} tokens</span></h2>",
        _prompt(case),
    ]
    for which, label in FOLLOWUP_LABELS.items():
        text = case.get(which, "")
        mean = _mean_abs(case[f"advantages_{which}"])
        parts.append(
            f'<div class="fu"><b>{label}:</b> <q>{escape(text)}</q> '
            f'<span class="stat">mean |A| = {mean:.3f}</span></div>'
        )
        parts.append(f'<div class="tokens" data-followup="{which}">{_token_spans(case, which, limit)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _meta_table(document: dict[str, Any]) -> str:
    rows = []
    items = list(document.get("meta", {}).items()) + [
        (f"summary: {k}", v) for k, v in document.get("summary", {}).items() if k != "by_kind"
    ]
    for key, value in items:
        if isinstance(value, float):
            value = round(value, 4)
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append(f"<tr><td>{escape(str(key))}</td><td>{escape(shown)}</td></tr>")
    return f'<table class="meta">{"".join(rows)}</table>'


def _legend(limit: float) -> str:
    stops = ", ".join(advantage_hex(limit * (i / 10 - 1), limit) for i in range(21))
    return (
        f'<div class="legend"><span>{-limit:+.2f} (penalised)</span>'
        f'<span class="bar" style="background: linear-gradient(to right, {stops})"></span>'
        f'<span>{limit:+.2f} (reinforced)</span><span class="stat">values beyond are clipped; '
        f"hover a token for its value</span></div>"
    )


def render_tokens_html(document: dict[str, Any], limit: float, title: str = "SDPO token advantages") -> str:
    """The page as a string; `limit` is the half-width of the colour scale (shared with the heatmaps)."""
    sections = "\n".join(_case_section(case, limit) for case in document["cases"])
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>\n'
        f"<body><h1>{escape(title)}</h1>\n"
        "<p>A = log p(token | prompt, follow-up) - log p(token | prompt): blue tokens become more likely "
        "once the model has seen the user's next message (reinforced), red ones less likely "
        "(penalised).</p>\n"
        f"{_meta_table(document)}\n{_legend(limit)}\n{sections}\n</body></html>\n"
    )


def write_tokens_html(document: dict[str, Any], path: Path, limit: float) -> Path:
    path.write_text(render_tokens_html(document, limit), encoding="utf-8")
    return path
