"""Batching: identical completion ids for student and teacher, EOS handling, masks from lengths,
truncation by whole messages (identical for x and (x, o)), counted skips, untouched tokenizer."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from sdpo_testutils import random_interaction

from sdpo_exp.chat import end_of_turn_id, render
from sdpo_exp.config.schemas.loss import HindsightConfig, HindsightTemplate
from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.batching import BatchBuilder, collate_encoded, skip_metrics
from sdpo_exp.sdpo.hindsight import SkipInteraction, hindsight_block, teacher_context

QWEN_KW = {"enable_thinking": False}


@pytest.fixture(params=["smollm2", "qwen3_style_no_thinking", "qwen3_style_thinking"])
def tokenizer_and_kwargs(request, smollm2_tokenizer, tiny_tokenizer):
    if request.param == "smollm2":
        return smollm2_tokenizer, {}
    if request.param == "qwen3_style_no_thinking":
        return tiny_tokenizer, QWEN_KW
    return tiny_tokenizer, {}


def _row(batch, b):
    c_len = int(batch.completion_mask[b].sum())
    s0, t0 = int(batch.student_prompt_lens[b]), int(batch.teacher_prompt_lens[b])
    return {
        "completion": batch.completion_ids[b, :c_len].tolist(),
        "student_completion": batch.student_input_ids[b, s0 : s0 + c_len].tolist(),
        "teacher_completion": batch.teacher_input_ids[b, t0 : t0 + c_len].tolist(),
        "student_prompt": batch.student_input_ids[b, :s0].tolist(),
        "teacher_prompt": batch.teacher_input_ids[b, :t0].tolist(),
        "c_len": c_len,
        "s_len": s0 + c_len,
        "t_len": t0 + c_len,
    }


@pytest.mark.parametrize("template", ["paper", "online_v1", "offline_v1"])
def test_random_conversations_align_exactly(tokenizer_and_kwargs, template):
    tokenizer, kwargs = tokenizer_and_kwargs
    hind = HindsightConfig(template=HindsightTemplate(template))
    builder = BatchBuilder(tokenizer, hind, kwargs, max_prompt_tokens=600, max_completion_tokens=48)
    eot = end_of_turn_id(tokenizer, kwargs)
    assert tokenizer.convert_ids_to_tokens(eot) == "<|im_end|>"
    rng = random.Random(hash(template) % 1000)
    interactions = [random_interaction(rng, i) for i in range(40)]
    batch, skipped = builder.build(interactions)
    assert batch is not None
    assert len(batch) + sum(skipped.values()) == len(interactions)
    assert set(skipped) <= {"prompt_too_long"}
    # the random set exercises history truncation and completion truncation
    assert batch.context_messages_dropped > 0 and batch.completions_truncated > 0
    for b, inter in enumerate(batch.interactions):
        row = _row(batch, b)
        # the same completion ids, in both sequences, right after each context
        assert row["student_completion"] == row["completion"] == row["teacher_completion"]
        expected = tokenizer(inter.completion, add_special_tokens=False)["input_ids"]
        if inter.completion_ended:
            expected = expected + [eot]
        expected = expected[: builder.max_completion_tokens]
        assert row["completion"] == expected
        assert bool(batch.completion_ended[b]) == (
            inter.completion_ended and len(expected) == row["c_len"] and expected[-1] == eot
        )
        # masks come from lengths
        assert int(batch.student_attention_mask[b].sum()) == row["s_len"]
        assert int(batch.teacher_attention_mask[b].sum()) == row["t_len"]
        assert batch.student_attention_mask[b, : row["s_len"]].all()
        # the rendered strings are what was tokenised; the teacher's holds the follow-up
        assert tokenizer.decode(row["student_prompt"]) == batch.student_texts[b]
        assert tokenizer.decode(row["teacher_prompt"]) == batch.teacher_texts[b]
        assert hindsight_block(inter.followup, hind) in batch.teacher_texts[b]
        assert inter.followup.strip() in tokenizer.decode(row["teacher_prompt"])
        assert len(row["student_prompt"]) <= 600 and len(row["teacher_prompt"]) <= 600
        if kwargs.get("enable_thinking") is False:
            assert batch.student_texts[b].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        else:
            assert batch.student_texts[b].endswith("<|im_start|>assistant\n")


def test_truncation_drops_whole_messages_identically(tiny_tokenizer):
    hind = HindsightConfig()
    long_turn = "word " * 60
    context = [{"role": "system", "content": "You are terse."}]
    for i in range(6):
        context += [
            {"role": "user", "content": f"question {i} {long_turn}"},
            {"role": "assistant", "content": f"answer {i} {long_turn}"},
        ]
    context.append({"role": "user", "content": "final question"})
    inter = Interaction(context=context, completion="fine", followup="Shorter please, " + "much " * 150)
    full_s = len(
        tiny_tokenizer(render(tiny_tokenizer, context, QWEN_KW), add_special_tokens=False)["input_ids"]
    )
    builder = BatchBuilder(
        tiny_tokenizer, hind, QWEN_KW, max_prompt_tokens=full_s // 2, max_completion_tokens=8
    )
    enc = builder.encode_one(inter)
    k = enc["dropped_messages"]
    assert k > 0 and k % 2 == 0, "history starts again at a user message"
    kept = [context[0], *context[1 + k :]]
    assert enc["student_text"] == render(tiny_tokenizer, kept, QWEN_KW)
    assert enc["teacher_text"] == render(tiny_tokenizer, teacher_context(kept, inter.followup, hind), QWEN_KW)
    assert enc["student_text"].startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    assert len(enc["teacher_ids"]) <= builder.max_prompt_tokens
    # one message fewer dropped would not fit: the fewest whole messages were dropped
    fewer = [context[0], *context[1 + k - 2 :]]
    t_fewer = render(tiny_tokenizer, teacher_context(fewer, inter.followup, hind), QWEN_KW)
    assert len(tiny_tokenizer(t_fewer, add_special_tokens=False)["input_ids"]) > builder.max_prompt_tokens
    # the long follow-up makes the teacher decide the drop count; the student loses the same messages
    s_fewer = render(tiny_tokenizer, fewer, QWEN_KW)
    assert len(tiny_tokenizer(s_fewer, add_special_tokens=False)["input_ids"]) <= builder.max_prompt_tokens


def test_prompt_too_long_when_the_last_user_message_alone_does_not_fit(tiny_tokenizer):
    builder = BatchBuilder(
        tiny_tokenizer, HindsightConfig(), QWEN_KW, max_prompt_tokens=64, max_completion_tokens=8
    )
    inter = Interaction([{"role": "user", "content": "long " * 100}], "ok", "fine")
    with pytest.raises(SkipInteraction) as info:
        builder.encode_one(inter)
    assert info.value.reason == "prompt_too_long"
    # no left truncation anywhere: a fitting prompt still starts with the template header
    batch, skipped = builder.build([inter, Interaction([{"role": "user", "content": "hi"}], "ok", "fine")])
    assert skipped == {"prompt_too_long": 1}
    assert batch.student_texts[0].startswith("<|im_start|>user\nhi")


def test_eos_kept_and_masked_in_when_pad_equals_eos(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.pad_token_id == tok.eos_token_id
    builder = BatchBuilder(tok, HindsightConfig(), {}, max_prompt_tokens=256, max_completion_tokens=64)
    ctx = [{"role": "user", "content": "hi"}]
    batch, _ = builder.build(
        [
            Interaction(ctx, "A much longer answer than the other one, with many tokens in it.", "ok"),
            Interaction(ctx, "Short.", "ok"),
        ]
    )
    eos = tok.eos_token_id
    short_len = int(batch.completion_mask[1].sum())
    assert batch.completion_ids[1, short_len - 1] == eos
    assert batch.completion_ids[1, short_len] == eos  # padding is the same id...
    assert (
        batch.completion_mask[1, short_len - 1] and not batch.completion_mask[1, short_len]
    )  # ...masks differ
    assert batch.completion_ended.tolist() == [True, True]


def test_completion_ids_are_used_as_given_and_truncation_removes_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    eot = end_of_turn_id(tok, QWEN_KW)
    builder = BatchBuilder(tok, HindsightConfig(), QWEN_KW, max_prompt_tokens=128, max_completion_tokens=5)
    ctx = [{"role": "user", "content": "hi"}]
    ended = builder.encode_one(Interaction(ctx, "ignored", "ok", completion_ids=[11, 12, eot]))
    assert ended["completion_ids"] == [11, 12, eot] and ended["completion_ended"]  # EOS not doubled
    added = builder.encode_one(Interaction(ctx, "ignored", "ok", completion_ids=[11, 12]))
    assert added["completion_ids"] == [11, 12, eot]
    open_ = builder.encode_one(
        Interaction(ctx, "ignored", "ok", completion_ids=[11, 12], completion_ended=False)
    )
    assert open_["completion_ids"] == [11, 12] and not open_["completion_ended"]
    cut = builder.encode_one(Interaction(ctx, "ignored", "ok", completion_ids=[1, 2, 3, 4, 5]))
    assert (
        cut["completion_ids"] == [1, 2, 3, 4, 5]
        and cut["completion_truncated"]
        and not cut["completion_ended"]
    )
    batch = builder.collate([ended, cut])
    assert batch.completions_truncated == 1
    assert batch.completion_ended.tolist() == [True, False]


def test_bad_interactions_are_counted_by_reason(tiny_tokenizer):
    builder = BatchBuilder(tiny_tokenizer, HindsightConfig(), QWEN_KW, 64, 8)
    u = [{"role": "user", "content": "hi"}]
    batch, skipped = builder.build(
        [
            Interaction(u, "fine", " "),
            Interaction([], "fine", "o"),
            Interaction([*u, {"role": "assistant", "content": "a"}], "fine", "o"),
            Interaction(u, "   ", "o"),
            Interaction(u, "x", "o", completion_ids=[]),
            Interaction([{"role": "user", "content": "long " * 100}], "fine", "o"),
            Interaction([{"role": "bot", "content": "a"}], "fine", "o"),
        ]
    )
    assert batch is None
    assert skipped == {
        "empty_followup": 1,
        "no_user_message": 1,
        "ends_with_assistant": 1,
        "empty_completion": 2,
        "prompt_too_long": 1,
        "invalid_message": 1,
    }
    assert skip_metrics(skipped)["skipped/empty_completion"] == 2.0


def test_tokenizer_is_never_modified(tiny_tokenizer):
    tok = tiny_tokenizer
    before = (tok.padding_side, tok.truncation_side, tok.pad_token, tok.chat_template, len(tok))
    builder = BatchBuilder(tok, HindsightConfig(), QWEN_KW, 32, 8)
    builder.build(
        [
            Interaction([{"role": "user", "content": "hi " * 50}], "yes", "ok"),
            Interaction([{"role": "user", "content": "hi"}], "yes", "ok"),
        ]
    )
    assert (tok.padding_side, tok.truncation_side, tok.pad_token, tok.chat_template, len(tok)) == before


def test_end_of_turn_falls_back_to_eos_without_a_special_token(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    assert end_of_turn_id(tok, {}) == tok.eos_token_id


def test_collate_requires_completion_tokens_and_moves_to_device(tiny_tokenizer):
    with pytest.raises(ValueError):
        collate_encoded([{"student_ids": [1], "teacher_ids": [1], "completion_ids": []}], pad_id=0)
    batch = collate_encoded(
        [
            {"student_ids": [5, 6], "teacher_ids": [5, 6, 7], "completion_ids": [8]},
            {"student_ids": [5], "teacher_ids": [5, 9], "completion_ids": [8, 9]},
        ],
        pad_id=0,
    )
    assert batch.student_input_ids.tolist() == [[5, 6, 8], [5, 8, 9]]
    assert batch.teacher_input_ids.tolist() == [[5, 6, 7, 8], [5, 9, 8, 9]]
    assert batch.completion_mask.tolist() == [[True, False], [True, True]]
    moved = batch.to(torch.device("cpu"))
    assert len(moved) == 2 and moved.completion_mask.dtype == torch.bool


def test_builder_from_composed_config(compose, tiny_tokenizer):
    cfg = compose("model=tiny_random", "hindsight.template=offline_v1", "trainer.max_prompt_tokens=77")
    builder = BatchBuilder.from_config(cfg, tiny_tokenizer)
    assert builder.max_prompt_tokens == 77
    assert builder.chat_template_kwargs == {"enable_thinking": False}
    enc = builder.encode_one(Interaction([{"role": "user", "content": "hi"}], "yes", "more detail"))
    assert "Future User Message: more detail" in enc["teacher_text"]
