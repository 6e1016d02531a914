"""Checks of identifiers and addresses shared by the services."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from eth_utils import is_address, is_checksum_address, to_checksum_address

from gateway.clock import parse_rfc3339, rfc3339
from gateway.errors import Unprocessable

TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_identifier(value: str, pattern: re.Pattern[str], what: str) -> str:
    """Raises Unprocessable (`invalid_<what>`) unless `value` matches `pattern` entirely."""
    if not pattern.fullmatch(value):
        raise Unprocessable(f"{what} {value!r} must match {pattern.pattern}", code=f"invalid_{what}")
    return value


def checksum_address(value: str, field: str) -> str:
    """EIP-55 form of an address. All-lowercase or all-uppercase hex is accepted;
    mixed case must carry a valid EIP-55 checksum. Raises Unprocessable (`invalid_address`)."""
    hex_part = value[2:] if value.startswith("0x") else ""
    if not is_address(value) or not hex_part:
        raise Unprocessable(f"{field} is not a 20-byte hex address", code="invalid_address", field=field)
    mixed = hex_part != hex_part.lower() and hex_part != hex_part.upper()
    if mixed and not is_checksum_address(value):
        raise Unprocessable(f"{field} has a wrong EIP-55 checksum", code="invalid_address", field=field)
    return to_checksum_address(value)


def check_name(value: str, field: str, *, max_length: int = 200) -> str:
    if not value.strip() or len(value) > max_length:
        raise Unprocessable(f"{field} must be 1 to {max_length} characters", code="invalid_name", field=field)
    return value


MAX_TTL_SECONDS = 10 * 366 * 24 * 3600  # ten years


def resolve_expiry(expires_at: str | None, ttl_seconds: int | None, now: datetime) -> str | None:
    """When a new token expires (RFC 3339, UTC), from `expires_at` or `ttl_seconds` (at most one);
    None: never. Raises Unprocessable (`invalid_expiry`) for both, a bad time, a time not in the
    future, or a TTL outside 1 s to ten years."""
    if expires_at is not None and ttl_seconds is not None:
        raise Unprocessable("give expires_at or ttl_seconds, not both", code="invalid_expiry")
    if ttl_seconds is not None:
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise Unprocessable(
                f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}",
                code="invalid_expiry",
                field="ttl_seconds",
            )
        return rfc3339(now + timedelta(seconds=ttl_seconds))
    if expires_at is None:
        return None
    try:
        moment = parse_rfc3339(expires_at)
    except ValueError:
        raise Unprocessable(
            "expires_at must be an RFC 3339 time with a zone", code="invalid_expiry", field="expires_at"
        ) from None
    if moment <= now or moment - now > timedelta(seconds=MAX_TTL_SECONDS):
        raise Unprocessable(
            "expires_at must be in the future, at most ten years away",
            code="invalid_expiry",
            field="expires_at",
        )
    return rfc3339(moment)
