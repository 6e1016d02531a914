"""Time, identifiers and tokens."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Fixed-width RFC 3339 UTC with microseconds, so text order is time order."""
    # isoformat with an explicit timespec is fixed width and several times faster than strftime
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def rfc3339_seconds(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Raises ValueError for text that is not an RFC 3339 timestamp with a zone."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return moment.astimezone(UTC)


# Every pair of Crockford digits, by the 10-bit number they spell: an id is 13 lookups, not 26
# shifts (new_id runs several times per proposal).
_CROCKFORD_PAIRS = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)


def new_id(prefix: str) -> str:
    """A sortable id: 48-bit millisecond time and 80 random bits, Crockford base32 (as ULID)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    pairs = _CROCKFORD_PAIRS
    return (
        f"{prefix}_{pairs[value >> 120]}{pairs[value >> 110 & 1023]}{pairs[value >> 100 & 1023]}"
        f"{pairs[value >> 90 & 1023]}{pairs[value >> 80 & 1023]}{pairs[value >> 70 & 1023]}"
        f"{pairs[value >> 60 & 1023]}{pairs[value >> 50 & 1023]}{pairs[value >> 40 & 1023]}"
        f"{pairs[value >> 30 & 1023]}{pairs[value >> 20 & 1023]}{pairs[value >> 10 & 1023]}"
        f"{pairs[value & 1023]}"
    )


def new_token() -> str:
    """A bearer token: 256 random bits with a readable prefix."""
    return "vk_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored only as this hash. 256 random bits need no slow KDF."""
    return hashlib.sha256(token.encode()).hexdigest()
