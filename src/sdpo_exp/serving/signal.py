"""What a follow-up taught the model about one served reply: its per-token advantages.

The same computation as signal analysis (`sdpo_exp.signal.scoring`) and training: the batch
builder renders x and (x, o) and appends the served token ids, `completion_logprobs` gives the
per-token log-probs, `losses.advantages` gives A_i = log pi(y_i | x, o, y_<i) - log pi(y_i | x, y_<i),
and each token gets signal analysis' colour (`signal.colors`: blue positive, red negative).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.batching import BatchBuilder
from sdpo_exp.sdpo.logprobs import completion_logprobs
from sdpo_exp.sdpo.losses import advantages
from sdpo_exp.signal.colors import advantage_hex, text_color
from sdpo_exp.signal.tokens import token_strings


def color_limit(values: list[float], fixed: float | None, percentile: float = 98.0) -> float:
    """The colour scale's half-width: `fixed`, else a high percentile of |A| (1.0 when all are 0)."""
    if fixed is not None:
        return float(fixed)
    magnitudes = np.abs(np.asarray(values, dtype=float))
    if not magnitudes.size:
        return 1.0
    limit = float(np.percentile(magnitudes, percentile))
    return limit if limit > 0 else (float(magnitudes.max()) or 1.0)


def _logprobs(model: Any, batch: Any, who: str, chunk_size: int) -> torch.Tensor:
    return completion_logprobs(
        model, getattr(batch, f"{who}_input_ids"), getattr(batch, f"{who}_attention_mask"),
        getattr(batch, f"{who}_prompt_lens"), batch.completion_ids, batch.completion_mask, chunk_size=chunk_size,
    )  # fmt: skip


def interaction_signal(
    model: Any,
    tokenizer: Any,
    interaction: Interaction,
    hindsight: Any,
    chat_template_kwargs: Any,
    max_prompt_tokens: int,
    chunk_size: int = 128,
    fixed_limit: float | None = None,
) -> dict[str, Any]:
    """Tokens, ids, student and teacher log-probs, advantages and colours of the interaction's reply
    (raises `SkipInteraction` when x or o cannot make a teacher context)."""
    length = len(interaction.completion_ids or []) + 1  # room for an appended end-of-turn token
    builder = BatchBuilder(tokenizer, hindsight, chat_template_kwargs, max_prompt_tokens, length)
    encoded = builder.encode_one(interaction)
    device = next(model.parameters()).device
    batch = builder.collate([encoded]).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            student = _logprobs(model, batch, "student", chunk_size).cpu()
            teacher = _logprobs(model, batch, "teacher", chunk_size).cpu()
    finally:
        model.train(was_training)
    mask = batch.completion_mask.cpu()
    n = int(mask[0].sum())
    values = advantages(teacher, student, mask)[0, :n].tolist()
    limit = color_limit(values, fixed_limit)
    ids = [int(i) for i in encoded["completion_ids"]]
    return {
        "tokens": token_strings(tokenizer, ids),
        "token_ids": ids,
        "advantages": values,
        "student_logprobs": student[0, :n].tolist(),
        "teacher_logprobs": teacher[0, :n].tolist(),
        "colors": [advantage_hex(a, limit) for a in values],
        "text_colors": [text_color(a, limit) for a in values],
        "color_limit": limit,
        "mean_abs_advantage": float(np.mean(np.abs(values))) if values else 0.0,
        "teacher_context": encoded["teacher_text"],
    }
