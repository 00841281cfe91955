"""History truncation: x and (x, o) rendered (`sdpo_exp.chat`) so that both fit the prompt limit.

A context that is too long loses whole oldest messages (a leading system message is kept), never
tokens cut from the left (that would remove chat-template headers), and the student context x and
the teacher context (x, o) lose the same messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sdpo_exp.chat import encode_text, render
from sdpo_exp.sdpo.hindsight import SkipInteraction

log = logging.getLogger(__name__)


@dataclass
class FittedContexts:
    student_text: str
    teacher_text: str
    student_ids: list[int]
    teacher_ids: list[int]
    dropped_messages: int  # whole messages removed from the start of the history (after a system one)


def _start_candidates(body: list[dict]) -> list[int]:
    """Where the kept history may start: unchanged (0), or at a later user message."""
    starts = [0] + [k for k in range(1, len(body)) if body[k]["role"] == "user"]
    last_user = max(k for k in range(len(body)) if body[k]["role"] == "user")
    return [k for k in starts if k <= last_user]


def fit_contexts(
    tokenizer: Any,
    context: list[dict],
    make_teacher: Callable[[list[dict]], list[dict]],
    chat_template_kwargs: Mapping[str, Any],
    max_prompt_tokens: int,
) -> FittedContexts:
    """Render x and (x, o) = make_teacher(x), dropping the fewest oldest messages so that both fit.

    The kept history starts at a user message (or is unchanged); the last user message is always
    kept. Raises SkipInteraction("prompt_too_long") when even that does not fit.
    """
    lead = list(context[:1]) if context and context[0]["role"] == "system" else []
    body = list(context[len(lead) :])
    candidates = _start_candidates(body)

    def attempt(k: int) -> FittedContexts | None:
        student = lead + body[k:]
        s_text = render(tokenizer, student, chat_template_kwargs)
        s_ids = encode_text(tokenizer, s_text)
        if len(s_ids) > max_prompt_tokens:
            return None
        t_text = render(tokenizer, make_teacher(student), chat_template_kwargs)
        t_ids = encode_text(tokenizer, t_text)
        if len(t_ids) > max_prompt_tokens:
            return None
        return FittedContexts(s_text, t_text, s_ids, t_ids, k)

    fitted = attempt(candidates[0])
    if fitted is not None:
        return fitted
    # Lengths shrink as more history is dropped: binary search the first start that fits.
    lo, hi, best = 1, len(candidates) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        result = attempt(candidates[mid])
        if result is None:
            lo = mid + 1
        else:
            best, hi = result, mid - 1
    if best is None:
        raise SkipInteraction(
            "prompt_too_long", f"over {max_prompt_tokens} tokens with only the last user turn"
        )
    return best
