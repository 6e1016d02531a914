"""Traceability: a correlation id for every request, and one structured access-log line per request.

`Tracing` is the outermost ASGI layer of the app (it wraps Litestar's exception handling and
router, so it sees every answer: unknown routes, 405s, 413s and 500s too). Per request it

1. takes the caller's `X-Request-ID` when it is a sane token (1 to 128 characters of
   `[A-Za-z0-9._-]`), and makes one otherwise (a client cannot inject log syntax through it);
2. puts a `RequestContext` (request id, client address, user agent) in the request's state,
   where handlers and services read it with `context_of(request)`: audit entries that must
   name who asked from where (approvals) take it from there;
3. adds `X-Request-ID` to the response (problem+json bodies also carry it as `request_id`);
4. when the access log is on, logs one JSON line on the `verdict.access` logger: time,
   request id, method, the route's path *template* (never the raw path or the query string,
   which could carry a secret pasted by mistake), status, duration, the caller's tenant, role
   and agent once authenticated, and the client address. Never a header value but the user
   agent, never a token or a body.

The client address is the socket peer (`scope["client"]`); `X-Forwarded-For` is not trusted.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway import telemetry
from gateway.authz import openapi_path
from gateway.metrics import HttpObserver

ACCESS_LOGGER = "verdict.access"
REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
MAX_USER_AGENT_CHARS = 256
_CONTEXT = "context"

access_log = logging.getLogger(ACCESS_LOGGER)
_encode = msgspec.json.Encoder().encode


class RequestContext(msgspec.Struct, frozen=True):
    """Who sent this request, from where: for logs and for audit entries that record it."""

    request_id: str
    client_address: str | None
    user_agent: str | None


# A request id needs to be unique, not secret: 64 random bits per process, then a counter
# (a tenth of the cost of fresh random bytes per request): 16 characters of [A-Za-z0-9_-] for
# the first million requests of a process, one more per 16-fold after.
_ID_PREFIX = secrets.token_urlsafe(8)[:11]
_id_counter = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):05x}"


_second = -1
_second_text = ""


def _utc_timestamp() -> str:
    """RFC 3339 UTC with milliseconds; the seconds part is formatted once per second."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1000):03d}Z"


def context_of(request: Request) -> RequestContext | None:
    """The request's `RequestContext`; None only for an app not wrapped by `Tracing`."""
    return request.scope["state"].get(_CONTEXT)


def request_id_of(request: Request) -> str | None:
    context = request.scope["state"].get(_CONTEXT)
    return context.request_id if context is not None else None


class Tracing:
    """ASGI middleware: request ids, `RequestContext`, and the access log (see the module)."""

    def __init__(self, app: ASGIApp, *, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests
        self._templates: dict[str, str] = {}
        self.http_metrics = HttpObserver()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = user_agent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if SANE_REQUEST_ID.fullmatch(value):
                    request_id = value.decode("ascii")
            elif name == b"user-agent":
                user_agent = value[:MAX_USER_AGENT_CHARS].decode("latin-1")
        if request_id is None:
            request_id = new_request_id()
        client = scope.get("client")
        client_address = client[0] if client else None
        state = scope["state"]
        state[_CONTEXT] = RequestContext(request_id, client_address, user_agent)
        id_header = (b"x-request-id", request_id.encode("ascii"))
        status = 500  # what the server answers if the app dies before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append(id_header)
                else:
                    message["headers"] = [*(headers or ()), id_header]
            await send(message)

        try:
            if telemetry.enabled():
                await self._traced(scope, receive, send_with_id, request_id, lambda: status)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self._after(scope, state, request_id, client_address, status, started)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, status: Callable[[], int]
    ) -> None:
        """The app inside the request's server span (gateway.telemetry), with a `respond` span
        from the response's start to its last byte; `status()` is the status sent so far."""
        responding = None

        async def send_in_span(message: Message) -> None:
            nonlocal responding
            if message["type"] == "http.response.start":
                responding = telemetry.start_span("respond")
            await send(message)
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if responding is not None and last:
                responding.end()
                responding = None

        with telemetry.server_span(scope, request_id) as current:
            try:
                await self.app(scope, receive, send_in_span)
            finally:
                if responding is not None:
                    responding.end()
                telemetry.finish_server_span(current, scope["method"], self._route(scope), status())

    def _after(
        self,
        scope: Scope,
        state: dict[str, Any],
        request_id: str,
        client_address: str | None,
        status: int,
        started: float,
    ) -> None:
        """Count the request (gateway.metrics) and write its access-log line."""
        seconds = time.perf_counter() - started
        self.http_metrics.observe(scope["method"], self._route(scope), status, seconds)
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            line = self._line(scope, state, request_id, client_address, status, seconds)
            handlers = access_log.handlers
            if len(handlers) == 1 and type(handlers[0]) is AccessLogHandler and not access_log.propagate:
                # `verdict serve`'s own set-up: write the line straight to its stream (a
                # LogRecord costs more than the rest of this layer together)
                handlers[0].write(line)
            else:
                access_log.info(line)

    def _route(self, scope: Scope) -> str | None:
        """The route's path template as the OpenAPI schema writes it; None for an unmatched path."""
        template = scope.get("path_template")
        if not template:  # unmatched: the raw path is the client's text
            return None
        path = self._templates.get(template)
        if path is None:
            path = self._templates.setdefault(template, openapi_path(template))
        return path

    def _line(
        self,
        scope: Scope,
        state: dict[str, Any],
        request_id: str,
        client_address: str | None,
        status: int,
        seconds: float,
    ) -> str:
        duration_ms = round(seconds * 1000, 2)
        path = self._route(scope)  # unmatched paths are logged as null
        line: dict[str, Any] = {
            "time": _utc_timestamp(),
            "request_id": request_id,
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": client_address,
        }
        principal = state.get("principal")
        if principal is not None:
            line["tenant"] = principal.tenant_id
            line["role"] = principal.role
            line["agent"] = principal.agent_id
        return _encode(line).decode()


class AccessLogHandler(logging.StreamHandler):
    """Writes each record's message (already a JSON line) as it is: no formatter, and no flush of
    its own (stderr is line-buffered, so each line is written when it ends)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(f"{record.getMessage()}\n")
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        """The fast path `Tracing` takes when this is the logger's only handler."""
        try:
            self.stream.write(f"{line}\n")
        except Exception:  # a closed or broken stderr must not fail the request
            return


def configure_access_log(enabled: bool) -> None:
    """For `verdict serve`: access lines go to stderr, one JSON object per line, not through
    the root logger (so no other handler reformats them)."""
    if not enabled or access_log.handlers:
        return
    access_log.addHandler(AccessLogHandler(sys.stderr))
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
