"""The pieces under the server: the append-only journal after a torn write, the key that links turns,
and the served turn's record (what a restart reads back)."""

from __future__ import annotations

import json

from sdpo_exp.serving.journal import Journal, read_records
from sdpo_exp.serving.turns import ServedTurn, TurnBook, turn_key


def test_journal_appends_whole_lines_and_cuts_a_torn_tail(tmp_path):
    path = tmp_path / "log.jsonl"
    journal = Journal(path)
    journal.append({"n": 1, "text": "é\nnewline inside"})
    journal.append({"n": 2})
    journal.close()
    assert [r["n"] for r in read_records(path)] == [1, 2]
    with open(path, "ab") as fh:  # a machine crash in the middle of a line
        fh.write(b'{"n": 3, "tex')
    assert [r["n"] for r in read_records(path)] == [1, 2]  # the torn line is not taken
    journal = Journal(path)  # the next start cuts it off, then appends after the whole lines
    journal.append({"n": 4})
    journal.close()
    lines = path.read_bytes().decode().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2, 4]


def _turn(context, text, cid="c1") -> ServedTurn:
    return ServedTurn(completion_id=cid, conversation_id="conv", turn=0, context=context, completion=text,
                      completion_ids=[5, 6, 7], completion_ended=True)  # fmt: skip


def test_a_turn_is_claimed_once_by_the_message_that_answers_it():
    context = [{"role": "user", "content": "Hi"}]
    book = TurnBook()
    book.add(_turn(context, "Hello there."))
    answer = [
        *context,
        {"role": "assistant", "content": " Hello there. \n"},
        {"role": "user", "content": "Shorter"},
    ]
    other = [
        *context,
        {"role": "assistant", "content": "Hello there!"},
        {"role": "user", "content": "Shorter"},
    ]
    assert book.claim(other) is None  # another reply text: not this turn
    assert book.pending == 1
    claimed = book.claim(answer)  # surrounding whitespace does not matter
    assert claimed is not None and claimed.completion_id == "c1"
    assert book.claim(answer) is None and book.pending == 0 and book.followup("c1") == "Shorter"
    interaction = claimed.interaction("Shorter")
    assert interaction.context == context and interaction.completion_ids == [5, 6, 7]
    assert interaction.meta["completion_id"] == "c1" and interaction.followup == "Shorter"
    assert turn_key(answer[:2]) == claimed.key != turn_key(other[:2])


def test_a_served_turn_survives_its_record():
    turn = _turn([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "reply", "c9")
    again = ServedTurn.from_record(
        json.loads(json.dumps({"event": "turn", **turn.to_record(), "seconds": 1.0}))
    )
    assert again == turn and again.key == turn.key


def test_only_loopback_addresses_count_as_local():
    from sdpo_exp.serving.server import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "::", "example.org"))
