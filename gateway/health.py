"""What `/health` reports: the problems this process knows of, and a log that says each once.

Any part of the gateway can make the process unhealthy in one of two ways:
- `report(component, code, detail)` while something is wrong and `clear(component)` once it is
  right again (for a state the component itself notices, such as a failed integrity check);
- `add_check(component, check)`: an async callable run on every `/health` request, returning a
  `HealthProblem` or None (for a state that must be asked, such as the database's).

`/health` answers 200 `{"status": "ok", …}` with no problem and 503 with the problems otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.errors import Unavailable

CHECK_TIMEOUT_SECONDS = 3.0
LOG_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class HealthProblem:
    component: str  # what is unhealthy: "database", "storage", "audit_log", …
    code: str  # a stable snake_case code, the same as the API's errors where there is one
    detail: str


Check = Callable[[], Awaitable[HealthProblem | None]]


class Health:
    """The problems of this process. Safe for use by many tasks of one event loop."""

    def __init__(self) -> None:
        self._reported: dict[str, HealthProblem] = {}
        self._checks: dict[str, Check] = {}

    def report(self, component: str, code: str, detail: str) -> None:
        """Mark `component` unhealthy until `clear(component)`."""
        self._reported[component] = HealthProblem(component, code, detail)

    def clear(self, component: str) -> None:
        self._reported.pop(component, None)

    def add_check(self, component: str, check: Check) -> None:
        """Run `check` on every health request; it returns a problem or None. A check that
        raises or takes longer than CHECK_TIMEOUT_SECONDS counts as a problem (fail closed)."""
        self._checks[component] = check

    async def problems(self) -> list[HealthProblem]:
        """The reported problems and those the checks find, in a stable order."""
        found = dict(self._reported)
        for component, check in self._checks.items():
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                    problem = await check()
            except TimeoutError:
                problem = HealthProblem(component, f"{component}_unavailable", "the check timed out")
            except Exception as exc:  # a check that fails is itself the problem
                problem = HealthProblem(component, f"{component}_unavailable", type(exc).__name__)
            if problem is not None:
                found.setdefault(component, problem)
        return [found[name] for name in sorted(found)]


class OncePerInterval:
    """A logger that writes each distinct message at most once per interval, then says how many
    it held back: an outage under load is a few lines a minute, not a traceback per request."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}  # message -> (when last written, held back since)

    def log(self, level: int, message: str) -> bool:
        """Write `message` unless it was written less than `interval` ago; True when written."""
        now = time.monotonic()
        last = self._last.get(message)
        if last is not None and now - last[0] < self.interval:
            self._last[message] = (last[0], last[1] + 1)
            return False
        held = f" ({last[1]} more like it in the last {self.interval:.0f} s)" if last and last[1] else ""
        self._last[message] = (now, 0)
        if len(self._last) > 1000:  # distinct messages are few; bound the memory regardless
            self._last = {message: self._last[message]}
        self.logger.log(level, "%s%s", message, held)
        return True


def log_failure(logger: logging.Logger, message: str, *args: object) -> None:
    """Log the exception being handled by a background loop that will try again.

    An outage (`gateway.errors.Unavailable`: the database or the disk away) is logged by the
    storage layer once per interval already, so here it is one debug line; anything else is a
    warning with its traceback, because it is ours to fix. Call it only inside `except`.
    """
    exc = sys.exc_info()[1]
    if isinstance(exc, Unavailable):
        logger.debug(message + " (%s)", *args, exc.code)
    else:
        logger.warning(message, *args, exc_info=True)
