"""Helpers of the serving tests: task=serve in this process on tiny_random, behind a real socket.

(Not a conftest.py: a second module named `conftest` would shadow tests/conftest.py for the modules
that import from it.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import reset_accelerate

# Short replies from the 3M-parameter random model: every request takes well under a second.
FAST = ["task=serve", "model=tiny_random", "generation.max_new_tokens=8", "task.max_tokens=12",
        "trainer.max_prompt_tokens=256", "trainer.max_completion_tokens=16", "task.port=0"]  # fmt: skip


@dataclass
class Served:
    url: str
    session: Any
    run_dir: Path

    def client(self, api_key: str = "unused", **kwargs: Any) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs)


@contextmanager
def serve_in_process(compose: Any, run_dir: Path, *overrides: str) -> Iterator[Served]:
    """The session and app of `task=serve` (seeded as the task runner seeds) on a free loopback port."""
    import torch

    from sdpo_exp.seeding import seed_everything
    from sdpo_exp.serving.app import Limits, create_app
    from sdpo_exp.serving.server import ThreadedServer
    from sdpo_exp.serving.session import ServeSession

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # request threads and a busy machine: one intra-op thread is ~10x faster here
    reset_accelerate()
    cfg = compose(*FAST, *overrides)
    seed_everything(int(cfg.seed))
    session = ServeSession(cfg, run_dir)
    task = cfg.task
    app = create_app(session, Limits(task.api_key, int(task.max_request_bytes), int(task.max_concurrency)))
    try:
        with ThreadedServer(app) as server:
            yield Served(server.url, session, run_dir)
    finally:
        session.close()
        reset_accelerate()
        torch.set_num_threads(threads)


def jsonl(path: Path) -> list[dict]:
    """Every line of a journal, each of which must be a JSON object."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def reply(response: Any) -> str:
    return response.choices[0].message.content
