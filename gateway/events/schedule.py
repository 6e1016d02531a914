"""How webhook deliveries are made: the retry schedule, timeouts, leases; from `VERDICT_WEBHOOK_*`
(docs/webhooks.md). Read once per process at start."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from gateway.events.outbound import ALLOW_PRIVATE_ENV
from gateway.settings import _flag

# Standard Webhooks' retry schedule: after the 1st failure 5 s, then 5 min, 30 min, 2 h, 5 h,
# 10 h, 10 h; the 8th failure disables the webhook.
SPEC_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How deliveries are made; from `VERDICT_WEBHOOK_*` (see docs/webhooks.md)."""

    enabled: bool = True  # whether this process delivers at all
    allow_private: bool = False
    timeout: float = 15.0  # seconds for one attempt, connecting included
    schedule: tuple[float, ...] = SPEC_SCHEDULE
    jitter: float = 0.1
    max_retry_after: float = 36000.0  # the longest `Retry-After` obeyed (the spec's longest wait)
    lease_seconds: float = 60.0  # must exceed `timeout`: a lease is renewed after each event
    poll_seconds: float = 0.2
    concurrency: int = 16  # webhooks delivered at once by one process
    page: int = 100
    keep_attempts_days: float = 30.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DeliveryConfig:
        """Raises ValueError for a malformed value."""
        env = os.environ if environ is None else environ
        base = cls()
        schedule = env.get("VERDICT_WEBHOOK_RETRY_SCHEDULE")
        timeout = float(env.get("VERDICT_WEBHOOK_TIMEOUT") or base.timeout)
        config = cls(
            enabled=_flag(env.get("VERDICT_WEBHOOK_DELIVERY"), True),
            allow_private=_flag(env.get(ALLOW_PRIVATE_ENV), False),
            timeout=timeout,
            schedule=tuple(float(s) for s in schedule.split(",")) if schedule else base.schedule,
            lease_seconds=float(
                env.get("VERDICT_WEBHOOK_LEASE_SECONDS") or max(base.lease_seconds, timeout + 5)
            ),
        )
        if config.lease_seconds <= config.timeout or not config.schedule or min(config.schedule) < 0:
            raise ValueError(
                "need VERDICT_WEBHOOK_LEASE_SECONDS > VERDICT_WEBHOOK_TIMEOUT and a retry schedule"
            )
        return config

    def delay(self, failures: int, retry_after: float | None) -> float | None:
        """Seconds until the next attempt after `failures` failed ones; None: give up."""
        if failures > len(self.schedule):
            return None
        if retry_after is not None:  # the receiver's word, up to a limit
            return min(retry_after, self.max_retry_after)
        base = self.schedule[failures - 1]
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)
