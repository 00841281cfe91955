"""Completions for cases: fixed ones untouched, sampled ones resampled (a bounded number of times)
while shorter than the minimum, the longest attempt kept and flagged when none is long enough."""

from __future__ import annotations

import pytest
import torch

from sdpo_exp.chat import stop_token_ids
from sdpo_exp.signal.cases import SignalCase
from sdpo_exp.signal.completions import obtain_completions
from sdpo_exp.signal.tokens import token_strings

GEN = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 8, "batch_size": 8}


def _case(i: int, completion: str | None = None) -> SignalCase:
    return SignalCase(
        id=f"c{i}",
        kind="constrain",
        messages=[{"role": "user", "content": f"Question number {i}?"}],
        followup="Shorter.",
        unrelated="What time is it?",
        completion=completion,
    )


@pytest.fixture()
def eos_prone_model(tiny_model, tiny_tokenizer):
    """The end-of-turn token gets a logit boost: most completions end after a few tokens."""
    eos = stop_token_ids(tiny_tokenizer, {}, tiny_model)[0]
    bias = torch.zeros(tiny_model.config.vocab_size)
    bias[eos] = 11.5
    handle = tiny_model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    yield tiny_model
    handle.remove()


def test_resampling_is_bounded_and_flagged(eos_prone_model, tiny_tokenizer):
    torch.manual_seed(3)
    cases = [_case(i) for i in range(8)] + [_case(8, completion="As given.")]
    completions = obtain_completions(
        eos_prone_model, tiny_tokenizer, cases, GEN, {"enable_thinking": False}, 5, 2
    )
    assert len(completions) == 9
    fixed = completions[-1]
    assert (fixed.source, fixed.text, fixed.ids, fixed.attempts) == ("fixed", "As given.", None, 0)
    sampled = completions[:-1]
    assert all(c.source == "sampled" and 1 <= c.attempts <= 3 for c in sampled)
    for c in sampled:
        if len(c.ids) >= 5:
            assert not c.below_min
        else:  # every attempt was short: the longest is kept, flagged, after exactly 1 + 2 attempts
            assert c.below_min and c.attempts == 3
    # the boost makes short completions common: both outcomes occur, and completions end with the EOS
    assert any(c.below_min for c in sampled) and any(not c.below_min and c.attempts > 1 for c in sampled)
    assert any(c.ended and c.ids[-1] == tiny_tokenizer.eos_token_id for c in sampled)


def test_no_resampling_without_a_minimum(eos_prone_model, tiny_tokenizer):
    torch.manual_seed(3)
    completions = obtain_completions(
        eos_prone_model, tiny_tokenizer, [_case(i) for i in range(4)], GEN, {}, 0, 5
    )
    assert all(c.attempts == 1 and not c.below_min for c in completions)


def test_minimum_above_max_new_tokens_is_refused(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="exceeds"):
        obtain_completions(tiny_model, tiny_tokenizer, [_case(0)], GEN, {}, 9, 1)


@pytest.mark.parametrize(
    "text", ["Plain words, no surprises.", "Emoji 😀 and accents: café, naïve\n\nline", "中文"]
)
def test_token_strings_concatenate_to_the_decoded_text(smollm2_tokenizer, text):
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"] + [smollm2_tokenizer.eos_token_id]
    pieces = token_strings(smollm2_tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == text + smollm2_tokenizer.eos_token
    assert pieces[-1] == smollm2_tokenizer.eos_token
