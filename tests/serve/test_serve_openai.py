"""task=serve through the real `openai` SDK: multi-turn conversations become the expected interactions
(with the served token ids), streaming, concurrent clients, and the API key."""

from __future__ import annotations

import threading

import openai
import pytest
from serve_support import jsonl, reply, serve_in_process

from sdpo_exp.chat import render_ids
from sdpo_exp.data.reader import read_interactions


def _talk(client, user_turns: list[str], **kwargs) -> list[dict]:
    """A conversation as a client sends it: the whole history every turn. Returns the messages."""
    messages: list[dict] = []
    for text in user_turns:
        messages.append({"role": "user", "content": text})
        response = client.chat.completions.create(model="any", messages=messages, **kwargs)
        messages.append({"role": "assistant", "content": reply(response), "id": response.id})
    return messages


def _plain(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def test_multi_turn_conversations_become_interactions(compose, tmp_path, tiny_tokenizer):
    with serve_in_process(compose, tmp_path / "run") as served:
        client = served.client()
        system = {"role": "system", "content": "You are terse."}
        a = _talk(client, ["What is 2+2?", "Too long. Just the number.", "Thanks, and 3+3?"])
        b = client.chat.completions.create(
            model="x", messages=[system, {"role": "user", "content": "Name a colour."}]
        )
        b_msgs = [
            system,
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": reply(b)},
        ]
        client.chat.completions.create(
            model="x", messages=[*b_msgs, {"role": "user", "content": "Another one?"}]
        )
        # the client retries the same follow-up: answered once already, so nothing new is logged
        client.chat.completions.create(
            model="x", messages=[*b_msgs, {"role": "user", "content": "Another one?"}]
        )
        # an assistant message this server never produced links to nothing
        fake = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "made up"}]
        client.chat.completions.create(model="x", messages=[*fake, {"role": "user", "content": "ok"}])
        assert served.session.health()["pending_turns"] == 4  # a's last, b's two answers, the fake's reply

    run = tmp_path / "run"
    turns = jsonl(run / "conversations.jsonl")
    assert len(turns) == 7 and all(t["event"] == "turn" for t in turns)
    by_id = {t["completion_id"]: t for t in turns}
    rows = jsonl(run / "interactions.jsonl")
    expected = [  # (context, reply id, follow-up) in the order the answers arrived
        (_plain(a[:1]), a[1]["id"], a[2]["content"]),
        (_plain(a[:3]), a[3]["id"], a[4]["content"]),
        (b_msgs[:2], b.id, "Another one?"),
    ]
    assert len(rows) == len(expected)
    for row, (context, reply_id, followup) in zip(rows, expected, strict=True):
        served_turn = by_id[reply_id]
        assert row["context"] == context and row["followup"] == followup
        assert row["completion"] == served_turn["completion"]
        assert (
            row["completion_ids"] == served_turn["completion_ids"]
            and row["meta"]["completion_id"] == reply_id
        )
        # the ids are the served tokens: decoded they give the text the client received
        assert tiny_tokenizer.decode(row["completion_ids"], skip_special_tokens=True) == row["completion"]
    assert b.usage.prompt_tokens == len(render_ids(tiny_tokenizer, b_msgs[:2], {"enable_thinking": False}))
    assert b.usage.completion_tokens == len(by_id[b.id]["completion_ids"])
    assert rows[0]["conversation_id"] == rows[1]["conversation_id"] != rows[2]["conversation_id"]
    assert [r["turn"] for r in rows] == [0, 1, 0]
    assert by_id[a[3]["id"]]["answers"] == a[1]["id"]
    # task=offline's reader takes the file as it is
    read = read_interactions(run / "interactions.jsonl")
    assert len(read.interactions) == 3 and not read.skipped
    assert read.interactions[1].completion_ids == rows[1]["completion_ids"]


def test_streaming_gives_the_same_reply_and_links(compose, tmp_path):
    with serve_in_process(compose, tmp_path / "run") as served:
        client = served.client()
        first = [{"role": "user", "content": "Say hello."}]
        chunks = list(client.chat.completions.create(model="m", messages=first, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length") and len({c.id for c in chunks}) == 1
        client.chat.completions.create(
            model="m",
            messages=[*first, {"role": "assistant", "content": text}, {"role": "user", "content": "Shorter"}],
        )
    rows = jsonl(tmp_path / "run" / "interactions.jsonl")
    assert len(rows) == 1 and rows[0]["completion"] == text and rows[0]["id"] == chunks[0].id


def test_concurrent_clients_each_get_their_own_interactions(compose, tmp_path):
    n = 6
    results: dict[int, list[dict]] = {}
    errors: list[BaseException] = []

    def client_thread(k: int, served) -> None:
        try:
            results[k] = _talk(served.client(), [f"Question number {k}?", f"Answer {k} was wrong."])
        except BaseException as exc:  # reported below
            errors.append(exc)

    with serve_in_process(compose, tmp_path / "run", f"task.max_concurrency={n}") as served:
        threads = [threading.Thread(target=client_thread, args=(k, served)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    rows = jsonl(tmp_path / "run" / "interactions.jsonl")
    assert len(rows) == n and len(jsonl(tmp_path / "run" / "conversations.jsonl")) == 2 * n
    for row in rows:
        k = int(row["context"][0]["content"].split()[-1].rstrip("?"))
        assert row["followup"] == f"Answer {k} was wrong."
        assert row["id"] == results[k][1]["id"] and row["completion"] == results[k][1]["content"]
    assert len({r["conversation_id"] for r in rows}) == n


def test_api_key_is_required_when_set(compose, tmp_path):
    with serve_in_process(compose, tmp_path / "run", "task.api_key=s3cret") as served:
        messages = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.AuthenticationError, match="API key"):
            served.client("wrong").chat.completions.create(model="m", messages=messages)
        assert not (tmp_path / "run" / "conversations.jsonl").read_text()
        assert reply(served.client("s3cret").chat.completions.create(model="m", messages=messages))
        assert [m.id for m in served.client("s3cret").models.list()] == ["tiny_random"]
