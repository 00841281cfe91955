"""A small HTTP server on 127.0.0.1 that speaks the Anthropic Messages API, with scripted failures.

The behaviour of a request is chosen by a marker in its last user message, `[case:NAME]`, so that
concurrent requests behave deterministically; each case's attempts are counted. Cases:
ok, rate_limited (429 with retry-after twice), overloaded (529 once), server_error (500 once),
timeout (no answer within the client's timeout, once), empty (200 with no text), malformed (a body
that is not JSON, once), always_500 (500 every time), judge (answers with the letter after
`[case:judge]`'s `answer=`).

`Latency` makes every successful answer take as long as a hosted model would: time to first token
plus the reply's output tokens at a given rate (the request is not streamed, so the client sees the
whole duration). `Latency.claude_haiku()` models Claude Haiku 4.5 answering a simulated user's brief
follow-up: 0.48 s to the first token and 53 output tokens per second (Artificial Analysis's figures
for Haiku 4.5 on Anthropic's API, late 2025), 30 to 90 output tokens per reply (the paper's prompt
asks for a very brief message): 1.05 to 2.18 s per call, 1.6 s on average. The token count is drawn
from a hash of the request, so a given request always takes the same time, and the reply has that
many words.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAILING_FIRST = {"rate_limited": 2, "overloaded": 1, "server_error": 1, "timeout": 1, "malformed": 1}


@dataclass(frozen=True)
class Latency:
    """A hosted model's answer time: `ttft_s` + output tokens / `tokens_per_s`, with the output tokens
    drawn (by a hash of the request) from [min_tokens, max_tokens]."""

    ttft_s: float = 0.48
    tokens_per_s: float = 53.0
    min_tokens: int = 30
    max_tokens: int = 90

    @classmethod
    def claude_haiku(cls) -> Latency:
        return cls()

    def tokens(self, body: dict) -> int:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        return self.min_tokens + int.from_bytes(digest[:4], "big") % (self.max_tokens - self.min_tokens + 1)

    def seconds(self, tokens: int) -> float:
        return self.ttft_s + tokens / self.tokens_per_s

    def describe(self) -> str:
        lo, hi = self.seconds(self.min_tokens), self.seconds(self.max_tokens)
        mean = self.seconds((self.min_tokens + self.max_tokens) / 2)
        return (f"{self.ttft_s:g} s to the first token + {self.min_tokens}-{self.max_tokens} output tokens at "
                f"{self.tokens_per_s:g} tokens/s: {lo:.2f} to {hi:.2f} s per call, {mean:.2f} s on average")  # fmt: skip


WORDS = ("That", "works", "but", "keep", "it", "shorter", "and", "skip", "the", "lists", "next", "time")


class Recorder:
    def __init__(self, timeout_sleep: float, latency: Latency | None = None) -> None:
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict] = []
        self.timeout_sleep = timeout_sleep
        self.latency = latency
        self.busy = 0  # requests being answered now
        self.max_busy = 0  # the most answered at once


def _message(text: str, output_tokens: int = 3) -> bytes:
    body = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": output_tokens},
    }
    return json.dumps(body).encode()


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def make_handler(rec: Recorder):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/v1/messages":
                self.rfile.read(int(self.headers["content-length"]))
                return self._send(404, _error("not_found_error", f"no route {self.path}"))
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            text = body["messages"][-1]["content"]
            text = text if isinstance(text, str) else json.dumps(text)
            match = re.search(r"\[case:(\w+)(?: answer=(\w))?\]", text)
            case = match.group(1) if match else "ok"
            with rec.lock:
                rec.attempts[case] += 1
                attempt = rec.attempts[case]
                rec.headers.append(dict(self.headers))
                rec.bodies.append(body)
            failing = attempt <= FAILING_FIRST.get(case, 0)
            if case == "rate_limited" and failing:
                return self._send(429, _error("rate_limit_error", "slow down"), {"retry-after": "0.05"})
            if case == "overloaded" and failing:
                return self._send(529, _error("overloaded_error", "overloaded"))
            if case in ("server_error", "always_500") and (failing or case == "always_500"):
                return self._send(500, _error("api_error", "boom"))
            if case == "timeout" and failing:
                time.sleep(rec.timeout_sleep)
                return self._send(200, _message("too late"))
            if case == "malformed" and failing:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "9")
                self.end_headers()
                self.wfile.write(b"not json{")
                return None
            if case == "empty":
                return self._send(200, _message(""))
            if case == "judge":
                return self._send(200, _message(match.group(2) or "C"))
            if rec.latency is not None:
                return self._slow_reply(body, case)
            return self._send(200, _message(f"Reply to {case}, attempt {attempt}."))

        def _slow_reply(self, body: dict, case: str) -> None:
            tokens = rec.latency.tokens(body)
            with rec.lock:
                rec.busy += 1
                rec.max_busy = max(rec.max_busy, rec.busy)
            try:
                time.sleep(rec.latency.seconds(tokens))
            finally:
                with rec.lock:
                    rec.busy -= 1
            words = " ".join(WORDS[i % len(WORDS)] for i in range(max(int(tokens * 0.75) - 5, 1)))
            return self._send(200, _message(f"Reply to {case}: {words}.", tokens))  # the same for a request

    return Handler


class MessagesServer:
    def __init__(self, timeout_sleep: float = 1.5, latency: Latency | None = None) -> None:
        self.recorder = Recorder(timeout_sleep, latency)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.recorder))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> MessagesServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
