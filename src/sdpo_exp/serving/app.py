"""The HTTP layer: FastAPI routes, the bearer token, the request-size and concurrency limits.

Routes: `POST /v1/chat/completions` (OpenAI's chat completions), `GET /v1/models`,
`GET /v1/sdpo/signal/{completion_id}` (a reply's per-token advantages once the user has answered
it), `GET /health`, and the chat page at `/` with its files under `/static/`. Every refusal is a 4xx
with OpenAI's error body (`{"error": {"message", "type", "param", "code"}}`) and happens before the
request reaches the model or the logs: a refused request changes nothing.
"""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sdpo_exp.serving.protocol import ApiError, ChatRequest, stream_events

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


class Backend(Protocol):
    """What the routes need from the serving session."""

    model_name: str

    def parse(self, raw: bytes) -> ChatRequest: ...

    def chat(self, request: ChatRequest) -> dict[str, Any]: ...

    def signal(self, completion_id: str) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]: ...

    def count_rejected(self, status: int) -> None: ...


class Limits:
    def __init__(self, api_key: str | None, max_request_bytes: int, max_concurrency: int) -> None:
        self.api_key = api_key or None
        self.max_request_bytes = int(max_request_bytes)
        self.max_concurrency = int(max_concurrency)
        self.slots = threading.BoundedSemaphore(self.max_concurrency)

    def check_auth(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            raise ApiError(401, "missing or incorrect API key: send 'Authorization: Bearer <task.api_key>'",
                           code="invalid_api_key")  # fmt: skip

    async def read_body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "the Content-Length header is not a number")
            if int(declared) > limit:
                raise ApiError(413, f"the request body has {declared} bytes; the limit is {limit} (task.max_request_bytes)",
                               code="request_too_large")  # fmt: skip
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body exceeds {limit} bytes (task.max_request_bytes)",
                               code="request_too_large")  # fmt: skip
            chunks.append(chunk)
        return b"".join(chunks)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def create_app(backend: Backend, limits: Limits) -> FastAPI:
    app = FastAPI(title="sdpo-exp serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        backend.count_rejected(exc.status)
        log.info("%s %s refused (%d): %s", request.method, request.url.path, exc.status, exc.message)
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        backend.count_rejected(exc.status_code)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(
            ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind=kind)
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return _error(ApiError(500, f"the server failed: {type(exc).__name__}: {exc}", kind="server_error"))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {**backend.health(), "auth": limits.api_key is not None}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        limits.check_auth(request)
        return {
            "object": "list",
            "data": [{"id": backend.model_name, "object": "model", "owned_by": "sdpo-exp"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        limits.check_auth(request)
        if not limits.slots.acquire(blocking=False):
            raise ApiError(429, f"{limits.max_concurrency} requests are in flight already (task.max_concurrency); "
                           "retry later", code="rate_limit_exceeded", kind="rate_limit_error")  # fmt: skip
        try:
            parsed = backend.parse(await limits.read_body(request))
            body = await run_in_threadpool(backend.chat, parsed)
        finally:
            limits.slots.release()
        if parsed.stream:
            return StreamingResponse(iter(stream_events(body)), media_type="text/event-stream")
        return body

    @app.get("/v1/sdpo/signal/{completion_id}")
    async def signal(completion_id: str, request: Request) -> dict[str, Any]:
        limits.check_auth(request)
        return await run_in_threadpool(backend.signal, completion_id)

    return app
