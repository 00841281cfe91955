"""`task=serve`: the policy behind an OpenAI-compatible endpoint and a chat page, learning from the
people who talk to it (see `sdpo_exp.serving`). Runs until interrupted (Ctrl-C, SIGTERM); then a
running update finishes, a checkpoint and (learn=online) final/ are written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from sdpo_exp.tasks.context import RunContext

log = logging.getLogger(__name__)


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    from sdpo_exp.serving.app import Limits, create_app
    from sdpo_exp.serving.server import bind, is_loopback, make_server, write_server_file
    from sdpo_exp.serving.session import ServeSession

    task = cfg.task
    host = str(task.host)
    if not is_loopback(host) and not task.api_key:
        log.warning("Listening on %s without task.api_key: anyone who can reach this address can use the model "
                    "and write to the run's logs", host)  # fmt: skip
    sock = bind(host, int(task.port))  # before loading: a taken port fails at once
    try:
        session = ServeSession(cfg, Path(ctx.run_dir), ctx.log)
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(
            session, Limits(task.api_key, int(task.max_request_bytes), int(task.max_concurrency))
        )
        url = write_server_file(Path(ctx.run_dir), sock, os.getpid())
        log.info("Serving %s (learn=%s) at %s: chat page %s/ ; OpenAI base URL %s/v1", session.model_name,
                 session.learn, url, url, url)  # fmt: skip
        make_server(app).run(sockets=[sock])
    finally:
        metrics = session.close()
        sock.close()
    log.info("Served %d requests; %d interactions logged in %s", metrics["requests"], metrics["interactions"],
             Path(ctx.run_dir) / "interactions.jsonl")  # fmt: skip
    return metrics
