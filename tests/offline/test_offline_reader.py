"""The interaction reader: every good record used, every kind of bad line skipped and counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sdpo_exp.data.reader import read_interactions
from sdpo_exp.data.records import RECORD_REASONS
from sdpo_exp.errors import DataError

GOOD = {
    "id": "g1",
    "conversation_id": "c1",
    "turn": 1,
    "context": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ],
    "completion": "Paris is the capital of France.",
    "followup": "Just the name please.",
    "source": "unit-test",
}
AUTHORS = {
    "prompt": [
        {"from": "human", "value": "Write a haiku about rain."},
        {"from": "gpt", "value": "Rain taps the window..."},
        {"from": "human", "value": "Now one about snow."},
    ],
    "completion": {
        "from": "gpt",
        "value": "Snow settles softly / on the quiet sleeping town / white breath of winter",
    },
    "user_response": {"from": "human", "value": "Too gloomy, make it cheerful."},
    "id": 17,
}


def _with(**changes):
    record = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is _DELETE:
            del record[key]
        else:
            record[key] = value
    return json.dumps(record)


_DELETE = object()

# (line, expected reason) for every reason the reader knows.
BAD_LINES = [
    ("", "blank_line"),
    (b"\xff\xfe not utf-8", "invalid_utf8"),
    ('{"context": [', "invalid_json"),
    ("[1, 2, 3]", "not_an_object"),
    (_with(followup=_DELETE), "missing_field"),
    (_with(completion=42), "wrong_type"),
    (_with(context=[{"role": "narrator", "content": "hi"}]), "unknown_role"),
    (_with(context=[{"role": "user", "content": "   "}]), "empty_message"),
    (_with(context=[{"role": "system", "content": "Be brief."}]), "no_user_message"),
    (
        _with(context=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]),
        "ends_with_assistant",
    ),
    (
        _with(context=[{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"}]),
        "ends_with_system",
    ),
    (_with(completion="  \n"), "empty_completion"),
    (_with(followup=""), "empty_followup"),
    (_with(completion="x" * 500), "too_long"),
]


def _write(path: Path, lines: list) -> Path:
    with open(path, "wb") as fh:
        for line in lines:
            fh.write(line if isinstance(line, bytes) else line.encode("utf-8"))
            fh.write(b"\n")
    return path


def test_every_reason_is_exercised():
    assert sorted({reason for _, reason in BAD_LINES}) == sorted(RECORD_REASONS)


def test_mixed_file_uses_all_good_lines_and_counts_each_bad_one(tmp_path, caplog):
    goods = [_with(id=f"g{i}") for i in range(3)] + [json.dumps(AUTHORS)]
    lines = []
    for i, (bad, _) in enumerate(BAD_LINES):
        lines.append(bad)
        if i < len(goods):
            lines.append(goods[i])
    path = _write(tmp_path / "mixed.jsonl", lines)
    with caplog.at_level(logging.WARNING):
        result = read_interactions(path, max_total_chars=300)
    assert [x.id for x in result.interactions] == ["g0", "g1", "g2", "17"]
    assert result.lines == len(lines)
    expected = {}
    for _, reason in BAD_LINES:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(result.skipped) == expected
    assert len(result.interactions) + sum(result.skipped.values()) == result.lines
    # each skip is logged with its line number
    assert f"{path}:1 skipped (blank_line)" in caplog.text
    summary = result.summary("data/train")
    assert summary["data/train/records"] == 4
    assert summary["data/train/skipped/invalid_json"] == 1


def test_our_form_round_trips_with_metadata(tmp_path):
    path = _write(tmp_path / "one.jsonl", [_with()])
    (x,) = read_interactions(path).interactions
    assert x.context[-1] == {"role": "user", "content": "Capital of France?"}
    assert x.completion == GOOD["completion"] and x.followup == GOOD["followup"]
    assert (x.id, x.conversation_id, x.turn) == ("g1", "c1", 1)
    assert x.meta == {"source": "unit-test"}
    record = x.to_record()
    assert record["meta"] == {"source": "unit-test"} and record["context"] == GOOD["context"]


def test_sampler_logprobs_are_read_back_for_the_off_policy_correction(tmp_path):
    """What task=online and task=serve log (ids with the sampler's log-probs) replays with them."""
    logged = _with(completion_ids=[5, 6, 7], completion_logprobs=[-0.5, None, -1.25])
    bad = [_with(id="short", completion_ids=[5, 6], completion_logprobs=[-0.5]),
           _with(id="text", completion_ids=[5], completion_logprobs=["x"]),
           _with(id="no_ids", completion_logprobs=[-0.5])]  # fmt: skip
    result = read_interactions(_write(tmp_path / "logged.jsonl", [logged, *bad]))
    (x,) = result.interactions
    assert x.completion_logprobs == [-0.5, None, -1.25] and "completion_logprobs" not in x.meta
    assert x.to_record()["completion_logprobs"] == [-0.5, None, -1.25]
    assert result.skipped == {"wrong_type": 3}


def test_authors_form_maps_roles(tmp_path):
    path = _write(tmp_path / "authors.jsonl", [json.dumps(AUTHORS)])
    (x,) = read_interactions(path).interactions
    assert [m["role"] for m in x.context] == ["user", "assistant", "user"]
    assert x.context[2]["content"] == "Now one about snow."
    assert x.completion.startswith("Snow settles softly")
    assert x.followup == "Too gloomy, make it cheerful."
    assert x.id == "17"


def test_authors_form_with_wrong_roles_is_rejected(tmp_path):
    swapped = dict(AUTHORS, user_response={"from": "gpt", "value": "I am the assistant"})
    unknown = dict(AUTHORS, prompt=[{"from": "robot", "value": "beep"}])
    path = _write(tmp_path / "bad.jsonl", [json.dumps(swapped), json.dumps(unknown), json.dumps(AUTHORS)])
    result = read_interactions(path)
    assert len(result.interactions) == 1
    assert dict(result.skipped) == {"wrong_type": 1, "unknown_role": 1}


def test_file_without_a_valid_record_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path / "all_bad.jsonl", ["not json", _with(followup="")])
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert str(path) in str(err.value)
    assert "invalid_json 1" in str(err.value) and "empty_followup 1" in str(err.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_interactions(tmp_path / "nope.jsonl")


def test_max_records_counts_what_it_leaves_out(tmp_path):
    path = _write(tmp_path / "many.jsonl", [_with(id=f"r{i}") for i in range(5)])
    result = read_interactions(path, max_records=2)
    assert [x.id for x in result.interactions] == ["r0", "r1"]
    assert result.unused_valid == 3
    assert result.summary("d")["d/unused_beyond_max_records"] == 3
