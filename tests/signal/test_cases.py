"""The cases file: the shipped one is valid and complete; malformed cases are skipped by id and counted."""

from __future__ import annotations

import json
import logging

import pytest

from sdpo_exp.config.store import resource_path
from sdpo_exp.errors import DataError
from sdpo_exp.signal.cases import load_cases

GOOD = {
    "id": "ok",
    "kind": "constrain",
    "prompt": "Say hi.",
    "followup": "Shorter please.",
    "unrelated": "What is 2+2?",
}


def _write(tmp_path, cases):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    return path


def test_shipped_cases_file():
    cases, skipped = load_cases(resource_path("signal_cases.json"))
    assert not skipped
    assert len(cases) >= 14
    kinds = {c.kind for c in cases}
    assert {"reinforce", "constrain"} <= kinds
    for kind in ("reinforce", "constrain"):
        assert sum(c.kind == kind for c in cases) >= 5
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.followup.strip() and case.unrelated.strip() and case.followup != case.unrelated
        assert case.messages[-1]["role"] == "user"
    fig2 = [c for c in cases if c.messages[-1]["content"] == "Answer with YES or NO: Is water wet?"]
    assert len(fig2) == 1
    assert fig2[0].completion == "YES, water is wet."
    assert fig2[0].followup == "I said YES or NO only."
    # most cases are sampled from the policy, as in the paper
    assert sum(c.completion is None for c in cases) > len(cases) / 2


def test_prompt_forms(tmp_path):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    path = _write(
        tmp_path, {"cases": [GOOD, {**GOOD, "id": "chat", "prompt": messages, "completion": "No."}]}
    )
    cases, skipped = load_cases(path)
    assert [c.id for c in cases] == ["ok", "chat"]
    assert cases[0].messages == [{"role": "user", "content": "Say hi."}]
    assert cases[1].messages == messages and cases[1].completion == "No."
    assert not skipped


BAD = [
    ({**GOOD, "id": "no_followup", "followup": "   "}, "empty_followup"),
    ({k: v for k, v in GOOD.items() if k != "unrelated"} | {"id": "missing"}, "missing_field"),
    (
        {
            **GOOD,
            "id": "ends_assistant",
            "prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        },
        "prompt_not_ending_with_user",
    ),
    ({**GOOD, "id": "bad_role", "prompt": [{"role": "robot", "content": "a"}]}, "bad_prompt"),
    ({**GOOD, "id": "typo", "completon": "x"}, "unknown_field"),
    ({**GOOD, "id": "empty_completion", "completion": ""}, "empty_completion"),
    ({**GOOD, "id": "num_kind", "kind": 3}, "bad_kind"),
    ({**GOOD, "id": "ok"}, "duplicate_id"),
    ("not a case", "not_an_object"),
]


def test_malformed_cases_skipped_and_counted(tmp_path, caplog):
    path = _write(tmp_path, [GOOD] + [case for case, _ in BAD])
    with caplog.at_level(logging.WARNING, logger="sdpo_exp.signal.cases"):
        cases, skipped = load_cases(path)
    assert [c.id for c in cases] == ["ok"]
    expected = {}
    for _, reason in BAD:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(skipped) == expected
    for case, _ in BAD:
        label = case["id"] if isinstance(case, dict) else "#9"
        assert label in caplog.text
    assert "#9" in caplog.text  # a case without an id is named by its index


@pytest.mark.parametrize(
    "content, match",
    [
        (json.dumps([{**GOOD, "followup": ""}]), "no valid case"),
        ("[]", "no valid case"),
        ("{not json", "not valid JSON"),
        (json.dumps({"something": 1}), "must hold a list"),
    ],
)
def test_unusable_file_is_an_error_naming_it(tmp_path, content, match):
    path = tmp_path / "bad_cases.json"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        load_cases(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cases(tmp_path / "nope.json")
