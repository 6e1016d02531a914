"""The one place where errors become HTTP responses: RFC 9457 problem+json with a stable `code`."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from gateway.errors import AppError
from gateway.metrics import count_problem
from gateway.tracing import request_id_of

log = logging.getLogger("verdict.http")
_QUOTED_VALUE = re.compile(r"'[^']*'")
PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None  # the X-Request-ID of the request, to quote when asking about it


def problem(
    request: Request | None,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    count_problem(status, code)
    body = {
        "type": f"urn:verdict:problem:{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_of(request) if request is not None else None,
        **extra,
    }
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def app_error_handler(request: Request, exc: AppError) -> Response:
    retry = exc.retry_after_seconds
    headers = {"Retry-After": str(retry)} if retry is not None else {}
    if exc.status == 408:  # the rest of a late body may still be on its way: do not read it
        headers["Connection"] = "close"
    return problem(request, exc.status, exc.code, exc.detail, exc.title, headers=headers or None, **exc.extra)


def validation_handler(request: Request, exc: ValidationException) -> Response:
    # Litestar's own detail names the full URL (query string included, which may hold
    # something secret): answer with the field-level messages only.
    # Nor does it repeat the offending values (msgspec's "Invalid enum value 'x'"): a caller
    # that pasted a token into the wrong field should not find it echoed into its own logs.
    errors = [
        {
            "field": item.get("key"),
            "message": _QUOTED_VALUE.sub("(value not shown)", str(item.get("message"))),
            "source": item.get("source"),
        }
        for item in (exc.extra or [])
        if isinstance(item, dict)
    ]
    unknown = [e for e in errors if "unknown field" in str(e["message"])]
    if unknown:
        return problem(
            request,
            400,
            "unknown_field",
            f"the body has a field this request does not take: {unknown[0]['message']}",
            "Invalid request",
            errors=errors,
        )
    return problem(
        request, 400, "invalid_request", "the request is not valid", "Invalid request", errors=errors
    )


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    detail = exc.detail if status < 500 else "internal error"
    # keep protocol headers such as Allow on 405 (RFC 9110 §15.5.6)
    return problem(request, status, code, detail, headers=dict(exc.headers or {}) or None)


def nesting_handler(request: Request, exc: RecursionError) -> Response:
    return problem(request, 400, "nesting_too_deep", "the JSON body is nested too deeply", "Invalid request")


def internal_error_handler(request: Request, exc: Exception) -> Response:
    # Never leak internals: the client gets a generic problem with the request id; the log gets
    # the traceback under the same id and the route's template (not the raw path or query).
    template = request.scope.get("path_template") or "<unmatched>"
    log.error(
        "unhandled error, request_id=%s %s %s",
        request_id_of(request),
        request.method,
        template,
        exc_info=exc,
    )
    return problem(request, 500, "internal_error", "internal error")


_ERROR_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or invalid credentials",
    403: "Not allowed for this credential",
    404: "Not found (another tenant's objects too)",
    409: "Conflict with the current state",
    413: "Body too large",
    415: "Unsupported media type",
    422: "The request cannot be processed",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "Temporarily unavailable; retry after `Retry-After` seconds",
}
PROBLEM_RESPONSES = {
    status: ResponseSpec(Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False)
    for status, description in _ERROR_DESCRIPTIONS.items()
}

EXCEPTION_HANDLERS = {
    AppError: app_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_error_handler,
    RecursionError: nesting_handler,
    Exception: internal_error_handler,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "PROBLEM_RESPONSES", "MediaType", "Problem", "problem"]
