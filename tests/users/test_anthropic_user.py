"""The Anthropic simulator and judge through the real SDK against a local Messages API server that
injects 429 (with retry-after), 529, 500, a timeout, an empty and a malformed reply."""

from __future__ import annotations

import logging
import time

import pytest
from anthropic_server import MessagesServer
from omegaconf import OmegaConf

from sdpo_exp.config.schemas.user import AnthropicUserConfig
from sdpo_exp.errors import ConfigError, SdpoError
from sdpo_exp.evaluation.pairs import judge_win_rate
from sdpo_exp.users.anthropic_chat import AnthropicChat, TooManyFailures
from sdpo_exp.users.judge import make_judge
from sdpo_exp.users.profiles import load_profile
from sdpo_exp.users.simulator import make_simulator

KEY = "sk-test-SECRET-4e1f9"


@pytest.fixture()
def server():
    with MessagesServer(timeout_sleep=1.5) as srv:
        yield srv


def _cfg(server, **overrides):
    cfg = OmegaConf.structured(AnthropicUserConfig(name="claude_test"))
    base = dict(base_url=server.url, api_key_env="SDPO_TEST_ANTHROPIC_KEY", timeout_s=0.5,
                backoff_base_s=0.01, backoff_max_s=0.2, max_retries=3, max_concurrency=4)  # fmt: skip
    for key, value in {**base, **overrides}.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_retries_skips_and_counts_through_the_real_sdk(server, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("SDPO_TEST_ANTHROPIC_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    simulator = make_simulator(_cfg(server), load_profile("no_emojis"), str(tmp_path))
    cases = [
        "ok",
        "rate_limited",
        "overloaded",
        "server_error",
        "timeout",
        "empty",
        "malformed",
        "always_500",
    ]
    t0 = time.perf_counter()
    replies = simulator.followups([f"Question [case:{c}]" for c in cases], ["Answer 😀"] * len(cases))
    elapsed = time.perf_counter() - t0
    got = dict(zip(cases, replies, strict=True))

    # retried until they succeed
    assert got["ok"] == "Reply to ok, attempt 1."
    assert got["rate_limited"] == "Reply to rate_limited, attempt 3."
    for case in ("overloaded", "server_error", "timeout", "malformed"):
        assert got[case] == f"Reply to {case}, attempt 2.", case
    # skipped: an empty reply is not retried, a server that keeps failing runs out of retries
    assert got["empty"] is None and got["always_500"] is None
    assert server.recorder.attempts["empty"] == 1 and server.recorder.attempts["always_500"] == 4

    m = simulator.metrics()
    assert m["calls"] == 8 and m["failed"] == 2
    assert m["failed/empty_reply"] == 1 and m["failed/http_500"] == 1
    assert m["retried/http_429"] == 2 and m["retried/http_529"] == 1 and m["retried/timeout"] == 1
    assert m["retried/malformed_reply"] == 1 and m["retried/http_500"] == 1 + 3
    assert m["retries"] == 2 + 1 + 1 + 1 + 1 + 3
    assert m["input_tokens"] > 0
    assert elapsed < 10

    # the paper's prompt went out, with the profile in the system prompt; the key only in a header
    body = server.recorder.bodies[0]
    assert body["system"].startswith("USER PROFILE: You are playing the role of a user who dislikes emojis")
    assert body["messages"][0]["content"].startswith("Original user request: Question [case:")
    assert body["model"] == "claude-haiku-4-5-20251001" and body["temperature"] == 0.0
    assert any(KEY in v for h in server.recorder.headers for v in h.values())
    assert KEY not in caplog.text and KEY not in repr(m)


def test_judge_through_the_sdk_gives_a_win_rate(server, monkeypatch, tmp_path):
    monkeypatch.setenv("SDPO_TEST_ANTHROPIC_KEY", KEY)
    judge = make_judge(_cfg(server, max_tokens=8), load_profile("no_emojis"), str(tmp_path))
    # the server answers with the letter in the request: A first, then B with the positions swapped
    requests = ["x"] * 3
    policy = ["p1", "p2", "p3"]
    base = ["b1", "b2", "b3"]

    class Scripted:
        profile = judge.profile

        def __init__(self):
            self.calls = 0

        def compare(self, reqs, a, b):
            letter = "A" if self.calls == 0 else "B"
            self.calls += 1
            return judge.compare([f"{r} [case:judge answer={letter}]" for r in reqs], a, b)

    result = judge_win_rate(Scripted(), requests, policy, base, bootstrap_samples=200)
    assert (result.wins, result.losses, result.ties) == (3, 0, 0) and result.win_rate == 1.0
    sent = server.recorder.bodies[-1]
    assert sent["system"].startswith("USER PROFILE:") and "Output exactly ONE character" in sent["system"]
    assert sent["messages"][0]["content"].startswith("User prompt: x [case:judge answer=B]\nResponse A: b")


def test_too_many_failures_stop_with_a_clear_error(server, monkeypatch):
    monkeypatch.setenv("SDPO_TEST_ANTHROPIC_KEY", KEY)
    chat = AnthropicChat(_cfg(server, max_retries=0, max_failure_rate=0.2))
    chats = [
        [{"role": "user", "content": f"q{i} [case:{'always_500' if i < 5 else 'ok'}]"}] for i in range(12)
    ]
    with pytest.raises(TooManyFailures, match=r"5 of 12 Anthropic API calls failed \(http_500 5\)"):
        chat.replies(chats)


def test_missing_key_and_rejected_key_are_clear_errors(server, monkeypatch):
    monkeypatch.delenv("SDPO_TEST_ANTHROPIC_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"needs an API key in \$SDPO_TEST_ANTHROPIC_KEY"):
        AnthropicChat(_cfg(server))
    monkeypatch.setenv("SDPO_TEST_ANTHROPIC_KEY", KEY)
    chat = AnthropicChat(_cfg(server, base_url=server.url + "/missing"))
    with pytest.raises(SdpoError, match="HTTP 404"):
        chat.replies([[{"role": "user", "content": "hi"}]])
