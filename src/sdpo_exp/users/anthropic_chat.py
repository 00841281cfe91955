"""Claude through the `anthropic` SDK, for simulators and judges: bounded concurrency, retries with
exponential backoff and jitter that honour `retry-after`, and failures skipped and counted.

The API key is read from the environment variable the config names (`api_key_env`) when the client
is built and is kept only inside the SDK client: it never enters a config, a log line, a metric or
an output file.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sdpo_exp.errors import ConfigError, SdpoError

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
FATAL_STATUS = {401, 403, 404}  # a bad key, no permission, an unknown model: every call would fail


class TooManyFailures(SdpoError):
    """More API calls failed than `max_failure_rate` allows."""


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class AnthropicChat:
    """`replies(chats)`: one reply text per chat (None for a call that failed for good)."""

    def __init__(self, cfg: Any, client: Any = None) -> None:
        import anthropic

        self.cfg = cfg
        self.model = str(cfg.model)
        self.max_tokens = int(cfg.max_tokens)
        self.temperature = None if cfg.temperature is None else float(cfg.temperature)
        self.max_retries = int(cfg.max_retries)
        self.backoff_base_s, self.backoff_max_s = float(cfg.backoff_base_s), float(cfg.backoff_max_s)
        self.max_failure_rate = float(cfg.max_failure_rate)
        self.max_concurrency = max(int(cfg.max_concurrency), 1)
        if client is None:
            key = os.environ.get(str(cfg.api_key_env))
            if not key:
                raise ConfigError(
                    f"{cfg.name}: the Anthropic backend needs an API key in ${cfg.api_key_env} "
                    f"(or set {cfg.api_key_env}/base_url for a compatible server, or use backend=rule_based)"
                )
            client = anthropic.Anthropic(
                api_key=key, base_url=cfg.base_url or None, timeout=float(cfg.timeout_s), max_retries=0
            )
        self.client = client
        self._anthropic = anthropic
        self._lock = threading.Lock()
        self._jitter = random.Random()
        self.counts: Counter[str] = Counter()  # calls, failed, retries, and each failure's reason

    # -- one call --------------------------------------------------------------------------------
    def _classify(self, exc: Exception) -> tuple[str, bool]:
        """(reason, retry?) for an exception of the SDK."""
        a = self._anthropic
        if isinstance(exc, a.APITimeoutError):
            return "timeout", True
        if isinstance(exc, a.APIConnectionError):
            return "connection_error", True
        if isinstance(exc, a.APIResponseValidationError):
            return "malformed_reply", True
        if isinstance(exc, a.APIStatusError):
            status = int(exc.status_code)
            if status in FATAL_STATUS:
                raise SdpoError(
                    f"{self.cfg.name}: the Anthropic API refused the request with HTTP {status} "
                    f"({type(exc).__name__}); check ${self.cfg.api_key_env}, the model name '{self.model}' "
                    f"and base_url"
                ) from None
            return f"http_{status}", status in RETRY_STATUS
        if isinstance(exc, ValueError):  # a body that is not JSON
            return "malformed_reply", True
        raise exc

    def _delay(self, attempt: int, exc: Exception) -> float:
        after = _retry_after(exc)
        if after is not None:
            return min(after, self.backoff_max_s)
        base = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        with self._lock:
            return base * (0.5 + self._jitter.random())

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _call(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        self._count("calls")
        for attempt in range(self.max_retries + 1):
            try:
                kwargs: dict[str, Any] = {"system": system} if system else {}
                if self.temperature is not None:  # the SDK has no temperature argument: a body field
                    kwargs["extra_body"] = {"temperature": self.temperature}
                response = self.client.messages.create(
                    model=self.model, max_tokens=self.max_tokens, messages=turns, **kwargs
                )
                self._count("input_tokens", int(getattr(response.usage, "input_tokens", 0) or 0))
                self._count("output_tokens", int(getattr(response.usage, "output_tokens", 0) or 0))
                text = "".join(getattr(b, "text", "") for b in (response.content or [])).strip()
                if not text:
                    self._count("failed")
                    self._count("failed/empty_reply")
                    return None
                return text
            except Exception as exc:  # classified below; unknown kinds are re-raised
                reason, retry = self._classify(exc)
                if retry and attempt < self.max_retries:
                    delay = self._delay(attempt, exc)
                    self._count("retries")
                    self._count(f"retried/{reason}")
                    log.debug("%s: %s, retry %d in %.2f s", self.cfg.name, reason, attempt + 1, delay)
                    time.sleep(delay)
                    continue
                self._count("failed")
                self._count(f"failed/{reason}")
                log.warning(
                    "%s: a call failed (%s) after %d attempt(s); skipped", self.cfg.name, reason, attempt + 1
                )
                return None
        return None  # pragma: no cover - the loop always returns

    # -- many calls --------------------------------------------------------------------------------
    def replies(self, chats: Sequence[Sequence[Mapping[str, str]]]) -> list[str | None]:
        if not chats:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(chats))) as pool:
            out = list(pool.map(self._call, chats))
        self._check_failure_rate(out)
        return out

    def _check_failure_rate(self, batch: list[str | None]) -> None:
        calls, failed = self.counts["calls"], self.counts["failed"]
        batch_failed = sum(r is None for r in batch)
        if (calls >= 10 and failed / calls > self.max_failure_rate) or (
            len(batch) >= 4 and batch_failed == len(batch)
        ):
            reasons = ", ".join(
                f"{k.split('/', 1)[1]} {v}" for k, v in sorted(self.counts.items()) if k.startswith("failed/")
            )
            raise TooManyFailures(
                f"{self.cfg.name}: {failed} of {calls} Anthropic API calls failed ({reasons}), more than "
                f"max_failure_rate={self.max_failure_rate:g} allows"
            )

    def metrics(self) -> dict[str, float]:
        return dict(self.counts)  # counts stay integers
