"""The per-address limit of the public routes, held for the whole deployment (every process, every host).

Routes anyone may call without a credential (the wallet-approval routes, `GET /v1/keys`, the API
docs) are limited per client address. A bucket in each process's memory alone gives an address N
times the rate with N workers, and N * H with H hosts. So each address also has a
count per fixed window of `WINDOW_SECONDS` in the database (`address_windows`), shared by every
process, and may make at most `limit` = max(burst, rate * window) requests per window across the
deployment.

The request path stays in memory: `check` compares the deployment's count as this process last
read it, plus what this process admitted since, with the limit, then spends a token of the
process's own bucket (`gateway.ratelimit.AddressLimiter`, which still caps bursts). A background
task, started when there is something to send, adds the counts admitted since the last sync to the
database every `SYNC_SECONDS` in one statement and reads back each address's deployment total. An
address is therefore refused everywhere within one sync interval of reaching the limit: across
the deployment it gets at most `limit` plus what each process admits in one sync interval (a few
requests at the steady rate) per window, whatever the number of processes. A database that
cannot be reached leaves each process's own bucket in charge until it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from gateway.errors import RateLimited
from gateway.ratelimit import AddressLimiter
from gateway.storage import Database

log = logging.getLogger("verdict")

WINDOW_SECONDS = 10
SYNC_SECONDS = 0.25
ROWS_PER_STATEMENT = 200
WARNING_INTERVAL_SECONDS = 60  # 600 parameters: well inside SQLite's and PostgreSQL's limits


def _add_counts_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?)"] * rows)
    return (
        f"INSERT INTO address_windows (window_start, address, requests) VALUES {values}"
        " ON CONFLICT (window_start, address)"
        " DO UPDATE SET requests = address_windows.requests + excluded.requests"
        " RETURNING address, requests"
    )


class SharedAddressLimiter:
    """Requests per client address for the whole deployment (see the module's docstring).

    `check` is synchronous and touches only this process's memory; safe for the tasks of one
    event loop. Counts reach the database within `sync_seconds`; a failed sync is logged and its
    counts are sent again with the next one (while the window lasts).
    """

    def __init__(
        self,
        db: Database,
        per_second: float,
        burst: int,
        *,
        window_seconds: int = WINDOW_SECONDS,
        sync_seconds: float = SYNC_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.local = AddressLimiter(per_second, burst)
        self.limit = max(burst, math.ceil(per_second * window_seconds))
        self.window_seconds = window_seconds
        self.sync_seconds = sync_seconds
        self.clock = clock
        self._window = -1
        self._known: dict[str, int] = {}  # the deployment's count per address, as last read
        self._pending: dict[str, int] = {}  # admitted here since the last sync
        self._task: asyncio.Task[None] | None = None
        self._purged_window = -1
        self._last_warning = -math.inf

    def check(self, address: str) -> None:
        """Admit one request of `address`. Raises RateLimited (with the seconds until it may ask
        again) when the deployment's count for this window, or this process's bucket, is spent."""
        now = self.clock()
        window = int(now // self.window_seconds)
        if window != self._window:
            self._window, self._known, self._pending = window, {}, {}
        pending = self._pending.get(address, 0)
        if self._known.get(address, 0) + pending >= self.limit:
            wait = math.ceil((window + 1) * self.window_seconds - now)
            raise RateLimited("too many requests from this address", retry_after_seconds=max(1, wait))
        self.local.check(address)
        if len(self._pending) >= self.local.max_addresses:
            return  # a flood from very many addresses: the process's buckets still bound it
        self._pending[address] = pending + 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sync_soon(), name="address-limits")

    async def _sync_soon(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self.sync_seconds)
                await self.sync()
        finally:
            self._task = None

    async def sync(self) -> None:
        """Add this process's counts to the deployment's and read back the totals. Logs (and
        keeps the counts for the next sync) when the database cannot be used."""
        window, pending = self._window, self._pending
        if not pending:
            return
        self._pending = {}
        rows = [(window, address, count) for address, count in pending.items()]
        try:
            totals = await self._add_counts(window, rows)
        # a brake on floods, not state: a failure must never fail the request path
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_warning >= WARNING_INTERVAL_SECONDS:  # not one line per sync
                self._last_warning = now
                log.warning(
                    "could not share the request counts of %d address(es): %s: %s (each process's own"
                    " limit holds meanwhile; next message in %d s at the earliest)",
                    len(rows), type(exc).__name__, exc, WARNING_INTERVAL_SECONDS,
                )  # fmt: skip
            if self._window == window:
                for address, count in pending.items():
                    self._pending[address] = self._pending.get(address, 0) + count
            return
        if self._window == window:
            self._known.update(totals)

    async def flush(self) -> None:
        """Wait until the counts noted so far are shared (tests, shutdown)."""
        task = self._task
        if task is not None:  # one last sync instead of the loop, which retries while it fails
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sync()

    async def _add_counts(self, window: int, rows: list[tuple[int, str, int]]) -> dict[str, int]:
        totals: dict[str, int] = {}
        async with self.db.transaction() as conn:
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start : start + ROWS_PER_STATEMENT]
                args = [value for row in chunk for value in row]
                for row in await conn.fetch(_add_counts_sql(len(chunk)), *args):
                    totals[row["address"]] = int(row["requests"])
            purge = self._purged_window != window
            if purge:  # windows before the last one count for nothing
                await conn.execute("DELETE FROM address_windows WHERE window_start < ?", window - 1)
        if purge:
            self._purged_window = window
        return totals
