"""Malformed, oversized and too many requests: a 4xx in OpenAI's error shape with a message naming
the problem, and nothing changes (no file grows, no turn is linked, the next good request works)."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest
from serve_support import reply, serve_in_process

GOOD = [{"role": "user", "content": "hello"}]

# (raw body, status, words the message must contain)
MALFORMED = [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"model": "m"}), 400, "'messages'"),
    (json.dumps({"messages": []}), 400, "'messages'"),
    (json.dumps({"messages": [{"role": "tool", "content": "x"}]}), 400, "role must be one of"),
    (json.dumps({"messages": [{"role": "user"}]}), 400, "no 'content'"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}), 400, "content must be a string"),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}), 400,
     "only text parts"),
    (json.dumps({"messages": [*GOOD, {"role": "assistant", "content": "hi"}]}), 400, "last message must be the user"),
    (json.dumps({"messages": GOOD, "temperature": "hot"}), 400, "'temperature' must be a number"),
    (json.dumps({"messages": GOOD, "temperature": 7}), 400, "'temperature' must be in [0, 2]"),
    (json.dumps({"messages": GOOD, "max_tokens": 0}), 400, "'max_tokens'"),
    (json.dumps({"messages": GOOD, "n": 3}), 400, "'n' must be 1"),
    (json.dumps({"messages": GOOD, "tools": [{"type": "function"}]}), 400, "'tools' is not supported"),
    (json.dumps({"messages": GOOD, "stream": "yes"}), 400, "'stream'"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 3000}]}), 400, "task.max_prompt_tokens"),
]  # fmt: skip


def _files(run_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.jsonl"))}


def test_malformed_requests_get_a_clear_4xx_and_change_nothing(compose, tmp_path):
    with serve_in_process(compose, tmp_path / "run", "task.max_request_bytes=20000") as served:
        client = served.client()
        first = client.chat.completions.create(model="m", messages=GOOD)
        answered = [*GOOD, {"role": "assistant", "content": reply(first)}, {"role": "user", "content": "no"}]
        before = _files(served.run_dir)
        for body, status, words in MALFORMED:
            r = httpx.post(f"{served.url}/v1/chat/completions", content=body, timeout=60,
                           headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == status, (body[:80], r.text)
            error = r.json()["error"]
            assert words in error["message"] and error["type"] == "invalid_request_error", (words, error)
        # through the SDK: the same refusals as its typed errors, with the server's message
        with pytest.raises(openai.BadRequestError, match="'n' must be 1"):
            client.chat.completions.create(model="m", messages=answered, n=2)
        with pytest.raises(openai.BadRequestError, match="role must be one of"):
            client.chat.completions.create(
                model="m", messages=[*answered[:2], {"role": "tool", "content": "x"}]
            )
        # oversized: by its Content-Length, and without one (chunked)
        with pytest.raises(openai.APIStatusError, match="task.max_request_bytes") as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x" * 30000}])
        assert caught.value.status_code == 413
        chunks = (b'{"messages": [{"role": "user", "content": "' + b"y" * 1000 for _ in range(30))
        r = httpx.post(f"{served.url}/v1/chat/completions", content=chunks, timeout=60)
        assert r.status_code == 413 and "exceeds 20000 bytes" in r.json()["error"]["message"]
        r = httpx.get(f"{served.url}/v1/sdpo/signal/chatcmpl-unknown", timeout=60)
        assert r.status_code == 404 and "no reply with id" in r.json()["error"]["message"]
        r = httpx.get(f"{served.url}/v1/sdpo/signal/{first.id}", timeout=60)
        assert r.status_code == 409 and "not answered" in r.json()["error"]["message"]
        assert _files(served.run_dir) == before  # nothing logged, nothing linked
        assert served.session.health()["pending_turns"] == 1
        assert served.session.counts["rejected"] == len(MALFORMED) + 6
        # the server still works, and the pending turn still links
        client.chat.completions.create(model="m", messages=answered)
        assert len((served.run_dir / "interactions.jsonl").read_text().splitlines()) == 1


def test_requests_beyond_the_concurrency_limit_get_429(compose, tmp_path):
    with serve_in_process(compose, tmp_path / "run", "task.max_concurrency=1") as served:
        policy = served.session.policy
        inside, release = threading.Event(), threading.Event()
        generate = policy.generate

        def held(*args, **kwargs):  # the first request stays in flight until released
            inside.set()
            release.wait(60)
            return generate(*args, **kwargs)

        policy.generate = held
        client = served.client()
        first: list = []
        worker = threading.Thread(
            target=lambda: first.append(client.chat.completions.create(model="m", messages=GOOD))
        )
        worker.start()
        assert inside.wait(60)
        with pytest.raises(openai.RateLimitError, match="task.max_concurrency") as caught:
            client.chat.completions.create(model="m", messages=GOOD)
        assert caught.value.status_code == 429
        release.set()
        worker.join(60)
        assert first and reply(first[0]) is not None
        assert len((served.run_dir / "conversations.jsonl").read_text().splitlines()) == 1
        client.chat.completions.create(model="m", messages=GOOD)  # a slot is free again
