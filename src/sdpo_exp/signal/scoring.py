"""Per-token advantages of each case's completion under its relevant and its unrelated follow-up.

Everything goes through the SDPO core, exactly as in training: `BatchBuilder.encode_one` renders x
and (x, o), tokenises the contexts and appends the completion ids (the sampled ids as they were
generated, or a fixed completion tokenised once), and `completion_logprobs` gives the per-token
log-probs; `losses.advantages` gives A = teacher log-prob - student log-prob, as in training.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sdpo_exp.chat import encode_text
from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.batching import BatchBuilder
from sdpo_exp.sdpo.hindsight import SkipInteraction
from sdpo_exp.sdpo.logprobs import completion_logprobs
from sdpo_exp.sdpo.losses import advantages
from sdpo_exp.signal.cases import SignalCase
from sdpo_exp.signal.completions import Completion
from sdpo_exp.signal.records import CaseSignal
from sdpo_exp.signal.tokens import token_strings

log = logging.getLogger(__name__)


def make_builder(
    tokenizer: PreTrainedTokenizerBase,
    hindsight: Any,
    chat_template_kwargs: Mapping[str, Any] | None,
    max_prompt_tokens: int,
    completions: Sequence[Completion] = (),
) -> BatchBuilder:
    """A batch builder whose completion limit is above every completion: nothing is truncated."""
    longest = max(
        (len(c.ids) if c.ids is not None else len(encode_text(tokenizer, c.text)) for c in completions),
        default=0,
    )
    return BatchBuilder(tokenizer, hindsight, chat_template_kwargs, max_prompt_tokens, longest + 1)


def _interaction(
    case: SignalCase, completion: Completion, builder: BatchBuilder, fixed_eos: bool
) -> Interaction:
    if completion.ids is None:
        ids, ended = None, fixed_eos
    else:
        # A sampled completion is scored on exactly the ids generated: "ended" only tells the builder
        # that the last id is its end-of-turn token (a different stop id is kept as it is).
        ids = list(completion.ids)
        ended = completion.ended and ids[-1] in builder.stop_ids
    return Interaction(
        context=case.messages,
        completion=completion.text,
        followup=case.followup,
        id=case.id,
        completion_ids=ids,
        completion_ended=ended,
    )


def _encode_pair(
    builder: BatchBuilder, case: SignalCase, completion: Completion, fixed_eos: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    base = _interaction(case, completion, builder, fixed_eos)
    relevant = builder.encode_one(base)
    unrelated = builder.encode_one(replace(base, followup=case.unrelated))
    if (
        relevant["student_ids"] != unrelated["student_ids"]
        or relevant["completion_ids"] != unrelated["completion_ids"]
    ):
        raise RuntimeError(f"case {case.id}: the student sequence differs between the two follow-ups")
    return relevant, unrelated


@torch.no_grad()
def _logprobs(model: PreTrainedModel, batch: Any, who: str, chunk_size: int) -> torch.Tensor:
    return completion_logprobs(
        model,
        getattr(batch, f"{who}_input_ids"),
        getattr(batch, f"{who}_attention_mask"),
        getattr(batch, f"{who}_prompt_lens"),
        batch.completion_ids,
        batch.completion_mask,
        chunk_size=chunk_size,
    )


def score_cases(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[SignalCase],
    completions: Sequence[Completion],
    builder: BatchBuilder,
    batch_size: int = 4,
    chunk_size: int = 128,
    fixed_completion_eos: bool = False,
) -> tuple[list[CaseSignal], Counter[str]]:
    """One record per usable case (in order) and the counts of cases skipped by reason."""
    skipped: Counter[str] = Counter()
    encoded = []
    for case, completion in zip(cases, completions, strict=True):
        try:
            encoded.append((case, completion, *_encode_pair(builder, case, completion, fixed_completion_eos)))
        except SkipInteraction as exc:
            skipped[exc.reason] += 1
            log.warning("Skipping signal case %s: %s", case.id, exc)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    records: list[CaseSignal] = []
    try:
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            relevant = builder.collate([item[2] for item in chunk]).to(device)
            unrelated = builder.collate([item[3] for item in chunk]).to(device)
            student = _logprobs(model, relevant, "student", chunk_size).cpu()
            teacher_f = _logprobs(model, relevant, "teacher", chunk_size).cpu()
            teacher_u = _logprobs(model, unrelated, "teacher", chunk_size).cpu()
            mask = relevant.completion_mask.cpu()
            a_f, a_u = advantages(teacher_f, student, mask), advantages(teacher_u, student, mask)
            lengths = mask.sum(dim=1).tolist()
            for row, (case, completion, enc_f, enc_u) in enumerate(chunk):
                n = int(lengths[row])
                s, tf, tu = (t[row, :n].tolist() for t in (student, teacher_f, teacher_u))
                ids = [int(i) for i in enc_f["completion_ids"]]
                records.append(
                    CaseSignal(
                        id=case.id,
                        kind=case.kind,
                        prompt=case.messages,
                        followup=case.followup,
                        unrelated=case.unrelated,
                        completion_source=completion.source,
                        completion_ended=bool(enc_f["completion_ended"]),
                        completion_text=completion.text,
                        completion_token_ids=ids,
                        tokens=token_strings(tokenizer, ids),
                        student_context=enc_f["student_text"],
                        teacher_context_followup=enc_f["teacher_text"],
                        teacher_context_unrelated=enc_u["teacher_text"],
                        student_logprobs=s,
                        teacher_logprobs_followup=tf,
                        teacher_logprobs_unrelated=tu,
                        advantages_followup=a_f[row, :n].tolist(),
                        advantages_unrelated=a_u[row, :n].tolist(),
                        sampling_attempts=completion.attempts,
                        extra={"below_min_completion_tokens": True} if completion.below_min else {},
                    )
                )
            log.info("Scored %d/%d cases", len(records), len(encoded))
    finally:
        model.train(was_training)
    return records, skipped
