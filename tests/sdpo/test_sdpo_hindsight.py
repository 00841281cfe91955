"""Hindsight contexts: exact template wording, placement on the last user message, counted skips."""

from __future__ import annotations

import copy
import logging

import pytest

from sdpo_exp.config.schemas.loss import HindsightConfig, HindsightTemplate
from sdpo_exp.errors import ConfigError
from sdpo_exp.sdpo.hindsight import (
    SKIP_REASONS,
    TEMPLATES,
    SkipInteraction,
    hindsight_block,
    teacher_context,
    template_text,
)

CTX = [
    {"role": "system", "content": "Be nice."},
    {"role": "user", "content": "First question"},
    {"role": "assistant", "content": "First answer"},
    {"role": "user", "content": "Second question"},
]


def test_templates_have_the_reference_wording():
    assert hindsight_block("Too long.", HindsightConfig(template=HindsightTemplate.paper)) == (
        "\n\n<hindsight context> The following is a future user message. "
        "Use this to guide your answer to the user prompt: Too long."
    )
    assert hindsight_block("  Too long. \n", HindsightConfig(template=HindsightTemplate.online_v1)) == (
        "\n\n=== HINDSIGHT CONTEXT ===\n[The following is a future user message. Use this to guide your "
        "answer to the user prompt.]\nToo long."
    )
    # offline_v1 inserts o as is (the authors' offline trainer does not strip it)
    assert hindsight_block(" Too long.", HindsightConfig(template=HindsightTemplate.offline_v1)) == (
        "\n\n[HINDSIGHT CONTEXT]\nThe following is a user response to your previous, insufficient "
        "attempt. Improve your response to the user prompt.\nFuture User Message:  Too long."
    )
    assert set(TEMPLATES) == {"paper", "online_v1", "offline_v1"}
    assert all("{followup}" in text for text in TEMPLATES.values())


@pytest.mark.parametrize("template", ["paper", "online_v1", "offline_v1"])
def test_block_goes_on_the_last_user_message_only(template):
    cfg = HindsightConfig(template=HindsightTemplate(template))
    original = copy.deepcopy(CTX)
    out = teacher_context(CTX, "Please be shorter {really}", cfg)
    assert CTX == original, "the student context must not be modified"
    assert out[:3] == CTX[:3]
    assert out[3]["role"] == "user"
    assert out[3]["content"] == CTX[3]["content"] + hindsight_block("Please be shorter {really}", cfg)
    assert "Please be shorter {really}" in out[3]["content"]


def test_block_goes_on_the_last_user_message_even_if_a_system_message_follows():
    ctx = [*CTX, {"role": "system", "content": "late system note"}]
    out = teacher_context(ctx, "o", HindsightConfig())
    assert out[3]["content"].endswith("prompt: o")
    assert out[4] == ctx[4]


def test_custom_template_and_a_template_that_adds_nothing(caplog):
    cfg = HindsightConfig(template=HindsightTemplate.custom, custom="\n[later the user said: {followup}]")
    assert teacher_context(CTX, "ok", cfg)[3]["content"] == "Second question\n[later the user said: ok]"
    empty = HindsightConfig(template=HindsightTemplate.custom, custom="")
    assert teacher_context(CTX, "ok", empty) == CTX
    with caplog.at_level(logging.WARNING):
        assert template_text(empty) == ""  # allowed, with a warning (BatchBuilder checks it once)
    assert "placeholder" in caplog.text
    with pytest.raises(ConfigError, match="hindsight.custom"):
        hindsight_block("ok", HindsightConfig(template=HindsightTemplate.custom, custom=None))


@pytest.mark.parametrize(
    ("context", "followup", "reason"),
    [
        (CTX, "", "empty_followup"),
        (CTX, " \n\t ", "empty_followup"),
        ([], "o", "no_user_message"),
        ([{"role": "system", "content": "s"}], "o", "no_user_message"),
        ([*CTX, {"role": "assistant", "content": "a"}], "o", "ends_with_assistant"),
        ([{"role": "robot", "content": "x"}, {"role": "user", "content": "u"}], "o", "invalid_message"),
        ([{"role": "user", "content": None}], "o", "invalid_message"),
        ([{"role": "user"}], "o", "invalid_message"),
        ("not a list", "o", "invalid_message"),
    ],
)
def test_bad_input_is_a_counted_skip(context, followup, reason):
    with pytest.raises(SkipInteraction) as info:
        teacher_context(context, followup, HindsightConfig())
    assert info.value.reason == reason
    assert reason in SKIP_REASONS


def test_skip_reason_must_be_known():
    with pytest.raises(ValueError):
        SkipInteraction("because")


def test_dictconfig_hindsight_from_the_composed_config(compose):
    cfg = compose("hindsight.template=online_v1")
    assert teacher_context(CTX, "o", cfg.hindsight)[3]["content"].endswith(
        "HINDSIGHT CONTEXT ===\n[The "
        "following is a future user message. Use this to guide your answer to the user prompt.]\no"
    )
