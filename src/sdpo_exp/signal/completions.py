"""The completion each case is scored on: its fixed one, or one sampled from the policy.

Sampled completions shorter than `min_tokens` are resampled, all short ones of a round together, at
most `max_resamples` more times; a case still short after that keeps its longest attempt (logged
and flagged in its record), so the analysis never silently changes which cases it shows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sdpo_exp.generation import Sample, sample_completions
from sdpo_exp.signal.cases import SignalCase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    text: str
    ids: list[int] | None  # the sampled ids; None for a fixed completion (tokenised by the batch builder)
    ended: bool  # a sampled completion that produced an end-of-turn token
    source: str  # "fixed" or "sampled"
    attempts: int  # samples drawn for this case (0 for a fixed completion)
    below_min: bool = False  # still shorter than min_tokens after every resample


def obtain_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[SignalCase],
    gen_cfg: Any,
    chat_template_kwargs: Mapping[str, Any] | None,
    min_tokens: int,
    max_resamples: int,
    stop_ids: Sequence[int] | None = None,
) -> list[Completion]:
    """One completion per case, in order."""
    max_new_tokens = int(gen_cfg["max_new_tokens"])  # a DictConfig or a plain mapping
    if min_tokens > max_new_tokens:
        raise ValueError(
            f"task.min_completion_tokens={min_tokens} exceeds generation.max_new_tokens={max_new_tokens}"
        )
    result: dict[int, Completion] = {}
    for index, case in enumerate(cases):
        if case.completion is not None:
            result[index] = Completion(case.completion, None, False, "fixed", 0)
    todo = [i for i in range(len(cases)) if i not in result]
    best: dict[int, Sample] = {}
    attempts = {i: 0 for i in todo}
    for round_ in range(max_resamples + 1):
        if not todo:
            break
        if round_:
            log.info(
                "Resampling %d completion(s) shorter than %d tokens (round %d)", len(todo), min_tokens, round_
            )
        samples = sample_completions(
            model,
            tokenizer,
            [cases[i].messages for i in todo],
            gen_cfg,
            chat_template_kwargs,
            stop_ids=stop_ids,
        )
        for i, sample in zip(todo, samples, strict=True):
            attempts[i] += 1
            if i not in best or len(sample.ids) > len(best[i].ids):
                best[i] = sample
        todo = [i for i in todo if len(best[i].ids) < min_tokens]
    for i, sample in best.items():
        short = len(sample.ids) < min_tokens
        if short:
            log.warning(
                "Case %s: every one of %d samples was shorter than %d tokens; keeping the longest (%d tokens)",
                cases[i].id,
                attempts[i],
                min_tokens,
                len(sample.ids),
            )
        result[i] = Completion(sample.text, list(sample.ids), sample.ended, "sampled", attempts[i], short)
    return [result[i] for i in range(len(cases))]
