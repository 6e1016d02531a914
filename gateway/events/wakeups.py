"""How a commit wakes subscribers: in this process at once, in other processes by PostgreSQL
LISTEN/NOTIFY.

After a batch commits, the chain writer tells the hub (`Ledger.on_commit`). The hub wakes this
process's subscribers and hands the new log size to the `Notifier`, which sends one NOTIFY for
every tenant that moved since its last one (while one is in flight, later commits coalesce into
the next): the hot path pays a dictionary write, and the database one statement per round, not
one per entry. Each process keeps one `Listener` connection LISTENing on `CHANNEL`; a payload is
`<schema> <tenant> <size> [<head>]`, and a process acts only on its own schema's (several
deployments, or the tests' schemas, may share a database).

The head (the hex leaf hash of the tenant's last entry, as its chain writer committed it) also
serves the chain writers: another process's writer of that tenant learns it
(`Ledger.learn_head`) and chains its next batch on it, instead of on the head it wrote last,
which that commit made stale (its compare-and-set would fail, and the batch be chained again).

A notification is only a hint: one lost (a listener reconnecting, a process killed between its
commit and its NOTIFY) delays delivery until the hub's next poll of the log sizes, and never
loses an event, because the log is what subscribers read. SQLite has one process, so the
in-process wake-up is all it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from gateway.events.hub import EventHub
from gateway.health import log_failure
from gateway.ledger import Ledger
from gateway.storage import Database

log = logging.getLogger("verdict.events")

CHANNEL = "verdict_events"
_HEAD = re.compile(r"[0-9a-f]{64}")
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
CHECK_SECONDS = 10.0  # how often the listener proves its connection alive (a silent drop)


class Notifier:
    """Sends this process's commits to the other processes (see the module)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[str, tuple[int, str | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # NOTIFY statements sent (for tests and the benchmark)

    def publish(self, tenant: str, size: int, head: str | None = None) -> None:
        if size > self._pending.get(tenant, (-1, None))[0]:
            self._pending[tenant] = (size, head)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send(), name="events-notify")

    async def _send(self) -> None:
        while self._pending:
            pending, self._pending = self._pending, {}
            payloads = [
                f"{tenant} {size} {head}" if head else f"{tenant} {size}"
                for tenant, (size, head) in pending.items()
            ]
            try:
                async with self.db.read() as conn:  # autocommit: sent when the statement ends
                    await conn.fetch(
                        "SELECT pg_notify(?, current_schema() || ' ' || p) FROM unnest(?::text[]) AS p",
                        CHANNEL,
                        payloads,
                    )
                self.sent += 1
            except Exception:  # the other processes' polls catch up
                log_failure(log, "could not notify other processes of %d commit(s)", len(payloads))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Listener:
    """This process's one LISTEN connection; hands its schema's notifications to the hub and
    reconnects when the connection is lost (the hub's poll covers the gap)."""

    def __init__(
        self, db: Any, hub: EventHub, on_head: Callable[[str, int, str], None] | None = None
    ) -> None:
        self.dsn: str = db.dsn
        self.schema: str | None = db.schema
        self.hub = hub
        self.on_head = on_head  # told (tenant, size, head hash) when a payload carries the head
        self.connected = asyncio.Event()
        self._own_schema: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="events-listen")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _received(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        # <schema> <tenant> <size> [<head>]; tenant ids have no spaces, a head is 64 hex digits
        parts = payload.rsplit(" ", 3)
        head = parts.pop() if len(parts) == 4 and _HEAD.fullmatch(parts[3]) else None
        parts = " ".join(parts).rsplit(" ", 2)
        if len(parts) != 3 or parts[0] != self._own_schema or not parts[2].isdigit():
            return
        self.hub.heard(parts[1], int(parts[2]))
        if head is not None and self.on_head is not None:
            self.on_head(parts[1], int(parts[2]), head)

    async def _run(self) -> None:
        import asyncpg  # only PostgreSQL deployments need it

        failures = 0
        while True:
            connection = None
            try:
                settings = {
                    "application_name": f"verdict-events:{self.schema}" if self.schema else "verdict-events"
                }
                if self.schema:
                    settings["search_path"] = self.schema
                connection = await asyncpg.connect(self.dsn, server_settings=settings, timeout=5)
                self._own_schema = await connection.fetchval("SELECT current_schema()")
                await connection.add_listener(CHANNEL, self._received)
                self.connected.set()
                failures = 0
                while True:  # a silent drop shows only when the connection is used
                    await asyncio.sleep(CHECK_SECONDS)
                    await connection.fetchval("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "events listener lost its connection (%s); again in %.1f s", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)


class Wakeups:
    """The hub with what wakes it, as the app runs them (`open_events`)."""

    def __init__(self, hub: EventHub, notifier: Notifier | None, listener: Listener | None) -> None:
        self.hub, self.notifier, self.listener = hub, notifier, listener

    async def close(self) -> None:
        await self.hub.close()
        if self.listener is not None:
            await self.listener.close()
        if self.notifier is not None:
            await self.notifier.close()


def open_events(db: Database, ledger: Ledger, *, poll_interval: float | None = None) -> Wakeups:
    """Start this process's events hub, wired to the ledger's commits and, on PostgreSQL, to
    the other processes' (call inside the running event loop, before the first append)."""
    hub = EventHub(db) if poll_interval is None else EventHub(db, poll_interval=poll_interval)
    notifier = listener = None
    if db.dialect == "postgresql":
        notifier = Notifier(db)
        hub.publish = notifier.publish
        listener = Listener(db, hub, on_head=ledger.learn_head)
        listener.start()
    ledger.on_commit = hub.committed
    hub.start()
    return Wakeups(hub, notifier, listener)
