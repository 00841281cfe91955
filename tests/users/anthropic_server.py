"""A small HTTP server on 127.0.0.1 that speaks the Anthropic Messages API, with scripted failures.

The behaviour of a request is chosen by a marker in its last user message, `[case:NAME]`, so that
concurrent requests behave deterministically; each case's attempts are counted. Cases:
ok, rate_limited (429 with retry-after twice), overloaded (529 once), server_error (500 once),
timeout (no answer within the client's timeout, once), empty (200 with no text), malformed (a body
that is not JSON, once), always_500 (500 every time), judge (answers with the letter after
`[case:judge]`'s `answer=`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAILING_FIRST = {"rate_limited": 2, "overloaded": 1, "server_error": 1, "timeout": 1, "malformed": 1}


class Recorder:
    def __init__(self, timeout_sleep: float) -> None:
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict] = []
        self.timeout_sleep = timeout_sleep


def _message(text: str) -> bytes:
    body = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 3},
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
            return self._send(200, _message(f"Reply to {case}, attempt {attempt}."))

    return Handler


class MessagesServer:
    def __init__(self, timeout_sleep: float = 1.5) -> None:
        self.recorder = Recorder(timeout_sleep)
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
