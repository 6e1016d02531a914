"""Application errors. Each has a stable snake_case `code` and an HTTP status.

Only `gateway.problems` turns them into HTTP responses (RFC 9457 problem+json).
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Root of the gateway's errors. `extra` members are added to the problem document."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"
    # When set, the answer carries `Retry-After` with this many seconds (RFC 9110 §10.2.3).
    retry_after_seconds: int | None = None

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidRequest(AppError):
    status, code, title = 400, "invalid_request", "Invalid request"


class Unauthenticated(AppError):
    status, code, title = 401, "unauthenticated", "Missing or invalid credentials"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Not allowed for this credential"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class RequestTimeout(AppError):
    """The client did not send its request in time; the connection is closed after the answer."""

    status, code, title = 408, "request_timeout", "Request timeout"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict with the current state"


class Unprocessable(AppError):
    status, code, title = 422, "unprocessable", "The request cannot be processed"


class RateLimited(AppError):
    """Too many requests; retry after `retry_after_seconds` (the answer carries `Retry-After`)."""

    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, retry_after_seconds=retry_after_seconds)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(AppError):
    """Retryable: the answer carries `Retry-After`."""

    status, code, title = 503, "unavailable", "Temporarily unavailable"
    retry_after_seconds = 1


class Overloaded(Unavailable):
    """This process has more work waiting than it can finish promptly; nothing was done: retry
    after `Retry-After` (gateway.admission, gateway.ledger)."""

    code, title = "overloaded", "Overloaded"


class DatabaseUnavailable(Unavailable):
    """The database could not be reached or used (a lost, refused or broken connection, a
    server shutting down or out of resources): nothing was committed; retry."""

    code = "database_unavailable"


class StorageUnavailable(Unavailable):
    """The local storage failed (an I/O error, a file locked too long, a read-only file):
    nothing was committed; retry."""

    code = "storage_unavailable"


class StorageFull(StorageUnavailable):
    """The disk (or the database's size limit) is full: nothing was committed; retry once an
    operator has freed space."""

    code = "storage_full"
    retry_after_seconds = 30


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"
