"""How the `verdict` commands that talk to a gateway over HTTP report a failure: one line.

A command wraps its HTTP calls in `gateway_errors(url)`. A gateway that cannot be reached, that
does not answer in time, or that answers with an error becomes one line on stderr (what failed,
where, what to try) and exit status 1, instead of an httpx traceback. A problem+json answer keeps
its status and stable `code`; a policy's `problems` follow, one indented line each.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click
import httpx

from gateway.client import GatewayError

__all__ = ["GatewayCommandError", "describe_problem", "gateway_errors", "problem_of"]


class GatewayCommandError(click.ClickException):
    """One line for the user (`Error: …`, exit 1), with optional indented detail lines."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []

    def format_message(self) -> str:
        return "\n".join([self.message, *(f"  {line}" for line in self.details)])


def describe_problem(status: int, problem: dict[str, Any], url: str) -> GatewayCommandError:
    """The one-line error for a gateway's refusal (RFC 9457 problem or any error body)."""
    code = str(problem.get("code") or "http_error")
    detail = " ".join(str(problem.get("detail") or problem.get("title") or "").split())[:200]
    line = f"the gateway at {url} answered {status} {code}" + (f": {detail}" if detail else "")
    if status in (429, 503):
        line += " (temporary: try again later)"
    details = [
        f"{item.get('path') or '(document)'}: {item.get('message')}"
        for item in problem.get("problems", [])
        if isinstance(item, dict)
    ]
    return GatewayCommandError(line, details)


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer, or a stand-in when the body is not JSON."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        first_line = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        problem = {"code": "http_error", "detail": first_line or response.reason_phrase}
    return problem


@contextlib.contextmanager
def gateway_errors(url: str) -> Iterator[None]:
    """Turn what can go wrong talking to the gateway at `url` into one line and exit 1.

    Raises GatewayCommandError (a click.ClickException) for: a refused or failed connection, a
    timeout, an invalid URL, a GatewayError (the gateway's refusal) and an answer that is not JSON.
    """
    where = url.rstrip("/")
    hint = "check --url (or VERDICT_URL) and that `verdict serve` is running there"
    try:
        yield
    except GatewayError as exc:
        raise describe_problem(exc.status, exc.problem, where) from None
    except httpx.TimeoutException:
        raise GatewayCommandError(f"the gateway at {where} did not answer in time; {hint}") from None
    except httpx.UnsupportedProtocol:
        raise GatewayCommandError(f"{url!r} is not an http:// or https:// URL; {hint}") from None
    except httpx.InvalidURL as exc:
        raise GatewayCommandError(f"{url!r} is not a valid URL ({exc}); {hint}") from None
    except httpx.TransportError as exc:
        reason = _reason(exc)
        raise GatewayCommandError(f"cannot reach the gateway at {where} ({reason}); {hint}") from None
    except httpx.HTTPError as exc:
        raise GatewayCommandError(f"talking to the gateway at {where} failed: {_reason(exc)}") from None
    except json.JSONDecodeError as exc:  # a 2xx answer whose body is not JSON
        raise GatewayCommandError(f"the gateway at {where} sent an answer that is not JSON ({exc})") from None


def _reason(exc: Exception) -> str:
    """The innermost OS reason (`[Errno 111] Connection refused` → `connection refused`)."""
    cause: BaseException | None = exc
    while cause is not None:
        strerror = getattr(cause, "strerror", None)
        if strerror:
            return str(strerror).lower()
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
