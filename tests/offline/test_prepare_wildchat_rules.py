"""WildChat under the authors' rules (their preprocessing script), each also switched off by its
option: user messages over 4,096 characters, messages cleaned before the filters, the stopping rule
(15,000 conversations, or 14,000 once 50,000 interactions are written), WildChat-1M's id column, and
what x keeps of consecutive same-role messages. Rows are read unshuffled unless said otherwise, so
that every count below follows from the fixture's comments."""

from __future__ import annotations

import json
from pathlib import Path

from raw_fixtures import wildchat_1m_row, wildchat_row, wildchat_rule_rows, write_parquet

from sdpo_exp.data.sources import get_preparer


def _prepare(compose, raw: Path, out_dir: Path, *overrides: str) -> tuple[dict, dict]:
    cfg = compose("task=prepare", "dataset=wildchat", f"dataset.local_path={raw}",
                  f"dataset.output_dir={out_dir}", *overrides)  # fmt: skip
    stats = get_preparer("wildchat")(cfg.dataset, out_dir).to_json()
    records = [json.loads(line) for line in (out_dir / "train.jsonl").read_text().splitlines()]
    return stats, {r["id"]: r for r in records}


def _contents(record: dict) -> list[str]:
    return [m["content"] for m in record["context"]]


def test_the_authors_filters_and_cleaning(compose, tmp_path):
    raw = write_parquet(tmp_path / "train.parquet", wildchat_rule_rows())
    stats, by_id = _prepare(compose, raw, tmp_path / "out", "dataset.shuffle_seed=null")
    assert sorted(by_id) == ["r0-1", "r0-2", "r2-1", "r3-1", "r6-1"]
    assert stats["dropped"] == {"conversation/user_too_long": 1, "conversation/too_few_messages": 1,
                                "conversation/language": 1}  # fmt: skip
    assert stats["conversations_passed_filters"] == stats["conversations_kept"] == 4
    # r3: the empty reply is gone before the split; x of a2 holds both user messages, merged
    assert _contents(by_id["r3-1"]) == ["q1\n\nq2"] and by_id["r3-1"]["completion"] == "a2"
    assert stats["messages_removed_empty"] == 1 and stats["histories_with_same_role_runs"] == 1
    # r6: written stripped
    r6 = by_id["r6-1"]
    assert (_contents(r6), r6["completion"], r6["followup"]) == (["padded question"], "answer", "thanks")


def test_each_rule_switched_off(compose, tmp_path):
    raw = write_parquet(tmp_path / "train.parquet", wildchat_rule_rows())
    stats, by_id = _prepare(compose, raw, tmp_path / "out", "dataset.shuffle_seed=null",
                            "dataset.rules.max_user_chars=null", "dataset.rules.clean_first=false")  # fmt: skip
    # r1 is kept (1 interaction); r3's empty reply is a (dropped) interaction of its own, so a2 is turn 2;
    # r4 passes the filters on its 3 raw messages but its only interaction has an empty completion
    assert sorted(by_id) == ["r0-1", "r0-2", "r1-1", "r2-1", "r3-2", "r6-1"]
    assert stats["dropped"] == {"conversation/language": 1, "conversation/no_interaction": 1,
                                "interaction/empty_completion": 2}  # fmt: skip
    assert by_id["r6-1"]["completion"] == "\n answer \n"


def test_same_role_runs_first_keep_merge(compose, tmp_path):
    raw = write_parquet(tmp_path / "train.parquet", wildchat_rule_rows())
    expected = {"first": ["q1"], "keep": ["q1", "q2"], "merge": ["q1\n\nq2"]}
    for mode, context in expected.items():
        _, by_id = _prepare(compose, raw, tmp_path / mode, "dataset.shuffle_seed=null",
                            f"dataset.rules.same_role_runs={mode}")  # fmt: skip
        assert _contents(by_id["r3-1"]) == context, mode


def _two_interaction_rows(n: int) -> list[dict]:
    turns = [("user", "q"), ("assistant", "a"), ("user", "f"), ("assistant", "b"), ("user", "g")]
    return [wildchat_row(f"s{i}", turns) for i in range(n)]


def test_stopping_rule(compose, tmp_path):
    raw = write_parquet(tmp_path / "train.parquet", _two_interaction_rows(6))
    cases = {
        # 6 interactions after 3 conversations, and 3 >= 3: stop there
        ("5", "6", "3"): (3, 6),
        # 6 interactions after 3, but fewer than 4 conversations: one more (8 interactions)
        ("5", "6", "4"): (4, 8),
        # the conversation limit alone
        ("2", "null", "0"): (2, 4),
    }
    for (max_conv, max_inter, min_conv), (rows, written) in cases.items():
        stats, _ = _prepare(compose, raw, tmp_path / f"{max_conv}-{max_inter}-{min_conv}", "dataset.shuffle_seed=null",
                            f"dataset.max_conversations={max_conv}", f"dataset.max_interactions={max_inter}",
                            f"dataset.min_conversations_to_stop={min_conv}")  # fmt: skip
        assert (stats["rows_read"], stats["interactions_written"], stats["stopped_early"]) == (
            rows,
            written,
            1,
        )


def test_a_conversation_that_passed_the_filters_counts_for_the_stop_without_interactions(compose, tmp_path):
    silent = wildchat_row("z", [("assistant", "hi"), ("user", "q"), ("assistant", "a")])  # x of "hi" is empty
    raw = write_parquet(tmp_path / "train.parquet", [silent, *_two_interaction_rows(3)])
    stats, by_id = _prepare(compose, raw, tmp_path / "out", "dataset.shuffle_seed=null",
                            "dataset.max_conversations=2")  # fmt: skip
    assert stats["rows_read"] == 2 and sorted(by_id) == ["s0-1", "s0-2"]
    assert stats["conversations_passed_filters"] == 2 and stats["conversations_kept"] == 1
    assert stats["dropped"] == {"conversation/no_interaction": 1, "interaction/no_user_message": 1}


def test_wildchat_1m_ids_survive_the_shuffle(compose, tmp_path):
    hashes = [f"{i:032x}" for i in range(8)]
    rows = [
        wildchat_1m_row(h, [("user", f"q{i}"), ("assistant", "a"), ("user", "f")])
        for i, h in enumerate(hashes)
    ]
    raw = write_parquet(tmp_path / "train.parquet", rows)
    stats, by_id = _prepare(compose, raw, tmp_path / "out", "dataset.hf_id=allenai/WildChat-1M")
    assert stats["interactions_written"] == 8
    assert {r["conversation_id"] for r in by_id.values()} == set(hashes)  # not train-<row number>
    assert all(r["context"][0]["content"] == f"q{hashes.index(r['conversation_id'])}" for r in by_id.values())
