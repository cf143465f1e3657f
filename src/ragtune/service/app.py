"""The HTTP API (FastAPI): ``POST /query``, ``GET /health``, ``GET /review/{id}``.

Bad requests are 4xx with the reason, and audited like any other: malformed JSON, unknown fields or wrong types
(422), a body over the size limit (413), an empty, oversized or binary question or a suspected prompt injection
(400), too many requests from one client (429). Nothing published yet is 503. A generator that fails or times out
gives a degraded answer (200, ``status: degraded``), never a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ragtune.service.core import QueryService, Unavailable

MAX_BODY = 64 * 1024
STATUS_CODES = {"answered": 200, "degraded": 200, "pending_review": 202, "blocked": 400, "rate_limited": 429}


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str
    client_id: str = Field("anonymous", max_length=128)
    filters: dict[str, Any] | None = None


class BodyLimit:
    """413 for a request whose declared body exceeds ``MAX_BODY``, before it is read. A plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` runs every request through an extra task and stream (measured: a tenth of the
    server's Python time under load)."""

    def __init__(self, app, service: QueryService):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
            if size.isdigit() and int(size) > MAX_BODY:
                self.service.audit.write({"status": "blocked", "reason": f"request body of {size} bytes exceeds "
                                          f"{MAX_BODY}", "path": scope["path"]})
                response = JSONResponse({"status": "blocked", "reason": f"request body too large: {size} bytes, "
                                                                        f"the limit is {MAX_BODY}"}, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(service: QueryService) -> FastAPI:
    app = FastAPI(title="ragtune", description="Answers from the published production configuration")
    app.add_middleware(BodyLimit, service=service)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        reasons = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        service.audit.write({"status": "blocked", "reason": "; ".join(reasons), "path": request.url.path})
        return JSONResponse({"status": "blocked", "reason": "; ".join(reasons)}, status_code=422)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable):
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)

    @app.post("/query")
    def query(body: QueryRequest):
        response = service.ask(body.question, body.client_id, body.filters)
        return JSONResponse(response, status_code=STATUS_CODES[response["status"]])

    @app.get("/health")
    def health():
        return service.health()

    @app.get("/review/{review_id}")
    def review(review_id: str):
        item = service.reviews.get(review_id)
        if item is None:
            return JSONResponse({"status": "not_found", "reason": f"no review {review_id}"}, status_code=404)
        answer = item["answer"] if item["status"] == "approved" else None
        return {"review_id": review_id, "status": item["status"], "answer": answer,
                "citations": item["citations"] if answer else [], "note": item["note"]}

    return app


def from_environment() -> FastAPI:
    """The app of one of several worker processes (``ragtune serve --workers N``): the workspace and settings come
    from ``RAGTUNE_HOME`` and ``RAGTUNE_SERVICE_SETTINGS``; the rate limit is shared through SQLite."""
    import os
    from pathlib import Path

    from ragtune.engine import Workspace
    from ragtune.service.core import load_settings

    from ragtune.device import limit_threads

    # the processes share the cores: each model runtime's own thread pool would oversubscribe them
    limit_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("RAGTUNE_SERVICE_WORKERS", "1"))))
    settings = os.environ.get("RAGTUNE_SERVICE_SETTINGS")
    service = QueryService(Workspace.default(), load_settings(Path(settings) if settings else None), shared=True)
    service.warm()
    return create_app(service)


def listening_socket(host: str, port: int):
    """A listening TCP socket with TCP_NODELAY, which accepted connections inherit. uvicorn's multi-process mode
    does not set it, and then every keep-alive response waits ~40 ms for a delayed ACK (measured)."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
