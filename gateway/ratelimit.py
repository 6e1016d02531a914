"""Rate limits: proposals per agent and minute (in the database), requests per client address.

Proposals. Each agent may commit at most its limit of proposals per fixed one-minute window
(`window_of`: Unix time // 60). The limit is the agent's own, else its tenant's, else
`DEFAULT_PROPOSALS_PER_MINUTE` (table `rate_limits`; agent id `''` is the tenant's row). The
count lives in `rate_windows`, one row per agent, and only the chain writer changes it, in the
same transaction (or the same one-statement append) as the proposals it counts. The chain head
row serializes those writes across every process, so the limit holds for all the gateway's
processes together, not per process. A fixed window lets an agent spend up to twice its limit
across one window boundary; that is the usual price of a counter that needs one row per agent.

Client addresses. `AddressLimiter` is a token bucket per client address, kept in the memory of
one process, for routes anyone may call without a credential (a database round trip per
request would itself be the cheapest way to overload the database). On its own, N worker
processes would give an address N times the rate, so `gateway.services.address_limits` puts it
behind a per-address count of the whole deployment, shared through the database in batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from gateway.errors import RateLimited

DEFAULT_PROPOSALS_PER_MINUTE = 100
MAX_PROPOSALS_PER_MINUTE = 1_000_000
WINDOW_SECONDS = 60
TENANT_DEFAULT = ""  # rate_limits.agent_id of a tenant's own limit (agent ids are never empty)


def window_of(unix_time: float) -> int:
    """The number of the fixed one-minute window that `unix_time` falls in."""
    return int(unix_time // WINDOW_SECONDS)


def seconds_until_next_window(unix_time: float) -> int:
    """Whole seconds (at least 1) until the window after the one `unix_time` falls in begins."""
    end = (window_of(unix_time) + 1) * WINDOW_SECONDS
    return max(1, math.ceil(end - unix_time))


class ProposalsLimited(RateLimited):
    """An agent has spent its proposals of window `window`."""

    def __init__(self, agent_id: str, limit: int, unix_time: float, window: int) -> None:
        super().__init__(
            f"agent {agent_id!r} may make {limit} proposals per minute; retry in the next minute",
            retry_after_seconds=seconds_until_next_window(unix_time),
        )
        self.agent_id = agent_id
        self.window = window


def proposals_limited(agent_id: str, limit: int, unix_time: float, window: int) -> ProposalsLimited:
    """The 429 for an agent that has spent its proposals of this window."""
    return ProposalsLimited(agent_id, limit, unix_time, window)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float  # monotonic seconds


class AddressLimiter:
    """A token bucket per client address: `burst` requests at once, refilled at `per_second`.

    In process memory and safe for the tasks of one event loop (no awaits inside). Holds at
    most `max_addresses` buckets; when full, it forgets every bucket (a flood from many
    addresses then gets a fresh burst each, which the per-process rate still bounds).
    """

    def __init__(self, per_second: float, burst: int, *, max_addresses: int = 100_000) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be positive and burst at least 1")
        self.per_second = per_second
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, _Bucket] = {}

    def check(self, address: str, now: float | None = None) -> None:
        """Spend one request of `address`. Raises RateLimited (with the seconds until a
        request is allowed again) when its bucket is empty."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._buckets.clear()
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / self.per_second)
            raise RateLimited("too many requests from this address", retry_after_seconds=max(1, wait))
        bucket.tokens -= 1
