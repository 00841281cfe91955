"""Running the app with uvicorn on a socket bound here (so that port 0 gives a free port whose number
is known before the first request), in the foreground (the task) or in a thread (the tests)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVER_FILE = "server.json"  # the address a running server listens on, in its run directory


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def make_server(app: Any) -> Any:
    """A uvicorn server that stops on SIGINT/SIGTERM and returns (uvicorn's own re-raises the signal
    after shutting down, which would end the process before the task writes its last checkpoint)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)
            if self._captured_signals:
                log.info("Stopped by signal %d", self._captured_signals[-1])

    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=30,
                            lifespan="off")  # fmt: skip
    return Server(config)


def write_server_file(run_dir: Path, sock: socket.socket, pid: int) -> str:
    url = url_of(sock)
    path = Path(run_dir) / SERVER_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "openai_base_url": f"{url}/v1", "pid": pid}) + "\n")
    tmp.replace(path)
    return url


class ThreadedServer:
    """The app served from a background thread (in-process tests)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
