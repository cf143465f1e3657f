"""The HTTP API (FastAPI): ``POST /query``, ``GET /health``, ``GET /review/{id}``.

The outermost layer (``Guarded``, plain ASGI) makes three promises whatever happens inside:

- the body is read as it arrives, whatever the transfer encoding, and a body over ``MAX_BODY`` bytes is refused
  (413) without reading the rest; JSON nested deeper than ``MAX_DEPTH`` is refused (422) before it is parsed;
- every request gets exactly one audit line (parse failures, 4xx, 5xx included), with the HTTP status; a refused
  payload is kept as its length, hash and a short prefix, never in full;
- an unexpected error is a 500 with the request id, never a dropped connection.

Bad requests are 4xx with the reason: malformed JSON, unknown fields or wrong types (422), a body over the size limit
(413), an empty, oversized or binary question or a suspected prompt injection (400), no valid API key (401), too many
requests (429). Nothing published yet is 503. A generator that fails or times out gives a degraded answer (200,
``status: degraded``).
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragtune.guard import text_problem
from ragtune.service.audit import digest
from ragtune.service.core import QueryService, Unavailable

MAX_BODY = 64 * 1024
MAX_DEPTH = 16
STATUS_CODES = {"answered": 200, "degraded": 200, "pending_review": 202, "blocked": 400, "rate_limited": 429}
log = logging.getLogger("ragtune.service")


def _plain(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_prefix: str | None = Field(None, max_length=512, description="keep chunks of documents whose id starts so")
    doc_ids: list[str] | None = Field(None, max_length=1000, description="keep chunks of these documents")

    @field_validator("doc_prefix")
    @classmethod
    def _plain_prefix(cls, v):
        return v if v is None else _plain(v)

    @field_validator("doc_ids")
    @classmethod
    def _plain_ids(cls, v):
        return v if v is None else [_plain(i) for i in v]


#: what every refused request body is told to send instead
SEND = ('send Content-Type: application/json and a JSON object such as {"question": "How many vacation days do new '
        'employees get?"}, optionally with "client_id" (a label) and "filters" ({"doc_prefix": "hr/"} or '
        '{"doc_ids": [...]})')


def _problem(error: dict) -> str:
    """One validation error of a request body, said plainly: where, and what is wrong."""
    where = ".".join(str(p) for p in error["loc"] if p != "body")
    if error["type"] == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', error['msg'])})"
    if not where and error["type"] in ("dict_type", "model_attributes_type"):
        return "the body must be a JSON object"
    if error["type"] == "missing":
        return f"{where}: required"
    return f"{where or 'body'}: {error['msg']}"


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., description="checked by the service: 400 with the reason when refused")
    client_id: str = Field("anonymous", max_length=128, description="a label for the caller's own use")
    filters: Filters | None = None

    @field_validator("client_id")
    @classmethod
    def _plain_client(cls, v):
        return _plain(v)


def json_depth(body: bytes) -> int:
    """The deepest nesting of objects and arrays in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class Guarded:
    """The outermost ASGI layer: bounded body, bounded nesting, one audit line per request, 500 on surprises."""

    def __init__(self, app, service: QueryService):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        record = {"request_id": uuid.uuid4().hex, "method": scope["method"], "path": scope["path"]}
        scope.setdefault("state", {})["audit"] = record
        sent = {}

        def write_audit():
            if not sent.get("audited"):
                sent["audited"] = True
                record["http_status"] = sent.get("status")
                record.setdefault("latency_ms", {})["http_total"] = round((time.perf_counter() - t0) * 1000, 3)
                self.service.audit.write(record)

        async def send_(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                write_audit()  # before the caller has the answer: no response leaves unaudited
            await send(message)

        try:
            body, refusal = await self._read(scope, receive)
            if refusal is not None:
                status, reason = refusal
                record.update(status="blocked", reason=reason, body=digest(body))
                await JSONResponse({"request_id": record["request_id"], "status": "blocked", "reason": reason},
                                   status_code=status)(scope, receive, send_)
                return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_)
        except Exception as exc:  # the promise: a 500 with the request id, and an audit line
            log.exception("request %s failed", record["request_id"])
            record.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:500])
            if "status" not in sent:
                await JSONResponse({"request_id": record["request_id"], "status": "error",
                                    "reason": "internal error; the request id names it in the audit log"},
                                   status_code=500)(scope, receive, send_)
        finally:
            write_audit()

    async def _read(self, scope, receive) -> tuple[bytes, tuple[int, str] | None]:
        """The body, read as it arrives; (what was read, (status, reason)) when it must be refused."""
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return b"", (413, f"request body too large: {declared} bytes, the limit is {MAX_BODY}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            part = message.get("body", b"")
            size += len(part)
            if size > MAX_BODY:
                head = b"".join(chunks)[:256]
                return head, (413, f"request body too large: over {MAX_BODY} bytes (stopped reading)")
            chunks.append(part)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        depth = json_depth(body)
        if depth > MAX_DEPTH:
            return body, (422, f"JSON nested {depth} levels deep; the limit is {MAX_DEPTH}")
        return body, None


def _identity(service: QueryService, request: Request) -> tuple[str | None, str | None]:
    """(identity, refusal reason) from ``Authorization: Bearer <key>``; anonymous only where the settings allow it."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if header:
        name = service.keys.identify(key.strip()) if scheme.lower() == "bearer" else None
        return (name, None) if name else (None, "invalid or revoked API key")
    if service.settings.anonymous:
        client = request.client.host if request.client else "unknown"
        return f"anonymous@{client}", None
    if not service.keys.active():
        return None, "an API key is required, and none exists yet: create one with `ragtune keys create NAME`"
    return None, "an API key is required: send 'Authorization: Bearer <key>'"


def create_app(service: QueryService) -> FastAPI:
    app = FastAPI(title="ragtune", description="Answers from the published production configuration")
    app.add_middleware(Guarded, service=service)

    def audit(request: Request) -> dict:
        return request.scope["state"]["audit"]

    def refuse(request: Request, status: int, kind: str, reason: str) -> JSONResponse:
        record = audit(request)
        record.update(status=kind, reason=reason)
        return JSONResponse({"request_id": record["request_id"], "status": kind, "reason": reason},
                            status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        reasons = "; ".join(dict.fromkeys(_problem(e) for e in exc.errors()))
        body = await request.body()
        audit(request)["body"] = digest(body)
        return refuse(request, 422, "blocked", f"{reasons[:2000]}. {SEND}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, say)
            audit(request)["body"] = digest(await request.body())
            return refuse(request, 422, "blocked", "request body is not valid JSON in UTF-8")
        return refuse(request, exc.status_code, "blocked" if exc.status_code < 500 else "error", str(exc.detail))

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable):
        return refuse(request, 503, "unavailable", str(exc))

    @app.post("/query")
    def query(body: QueryRequest, request: Request):
        identity, refusal = _identity(service, request)
        if refusal:
            return refuse(request, 401, "unauthorized", refusal)
        filters = body.filters.model_dump(exclude_none=True) if body.filters else None
        response = service.ask(body.question, body.client_id, filters, identity=identity, record=audit(request))
        return JSONResponse(response, status_code=STATUS_CODES[response["status"]])

    @app.get("/health")
    def health(request: Request):
        report = service.health()
        audit(request).update(status=report["status"])
        return JSONResponse(report, status_code=200 if report["status"] in ("ok", "degraded") else 503)

    @app.get("/review/{review_id}")
    def review(review_id: str, request: Request):
        identity, refusal = _identity(service, request)
        if refusal:
            return refuse(request, 401, "unauthorized", refusal)
        audit(request).update(identity=identity, review_id=review_id)
        item = service.reviews.get(review_id)
        if item is None:
            return refuse(request, 404, "not_found", f"no review {review_id}")
        answer = item["answer"] if item["status"] == "approved" else None
        audit(request)["status"] = item["status"]
        return {"review_id": review_id, "status": item["status"], "answer": answer,
                "citations": item["citations"] if answer else [], "note": item["note"]}

    return app


def from_environment() -> FastAPI:
    """The app of one of several worker processes (``ragtune serve --workers N``): the workspace and settings come
    from ``RAGTUNE_HOME`` and ``RAGTUNE_SERVICE_SETTINGS``; the rate limit is shared through SQLite."""
    import os
    from pathlib import Path

    from ragtune.models.device import limit_threads
    from ragtune.workspace import Workspace
    from ragtune.service.core import load_settings

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
