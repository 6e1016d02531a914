"""The events hub of one process: the recent tail of each watched tenant's log, shared by every
subscriber (Server-Sent Events, WebSocket, long polls), and the wake-ups that move it.

Concurrency and delivery guarantees:
- The log is the source of truth. A subscriber holds a position (a seq); it reads what follows
  from the tail in memory when the tail reaches back that far, from the database otherwise, so
  resuming from any seq loses and repeats nothing (DESIGN invariant 11). Entries become visible
  in seq order (the chain head row serializes commits), so "after seq" never skips one.
- Wake-ups are hints. A commit in this process reaches the hub at once (`Ledger.on_commit`,
  with the entries as stored: a tail that reaches up to them takes them without a read); a
  commit in another process arrives by PostgreSQL NOTIFY (`gateway.events.notify`); and every
  `poll_interval` the hub reads the log sizes of the tenants it watches, so a lost notification,
  a listener reconnecting or a writer that notifies nobody (the operator's CLI) only delays.
- One fetch per tenant at a time reads new entries (a single query for many), however many
  subscribers wait; their events, and the bytes sent for them, are built once per view (a
  tenant reader's `data` is the entry's stored bytes, copied, not decoded: entries kept here
  hold no containers for the cyclic collector to walk), and subscribers of the whole log at
  one position share one joined chunk of frames. Subscribers
  are woken at most every WAKE_SECONDS, so that under a stream of commits each sends fewer,
  larger chunks.
Safe for the tasks of one event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple, TypeVar

import msgspec

from gateway.events.view import (
    MAX_LIMIT,
    ActionOwners,
    Event,
    EventFilter,
    Reader,
    StoredEntry,
    decode_entry,
    decode_event,
    event_json,
    needs_owners,
    read_entries,
    read_page,
    visible,
)
from gateway.health import log_failure
from gateway.storage import Database

log = logging.getLogger("verdict.events")

BUFFER_ENTRIES = 4096  # the recent entries each watched tenant's tail keeps in memory
FETCH_CHUNK = 1000
POLL_SECONDS = 1.0
IDLE_SECONDS = 60.0  # a tail nobody subscribed to for this long is dropped
WAKE_SECONDS = 0.025  # subscribers of a tenant are woken at most this often
_encode = msgspec.json.Encoder().encode


class HubClosed(Exception):
    """The process is shutting down: streams end (clients resume elsewhere from their position)."""


class Viewed:
    """One entry of a tail with its two views (whole, for tenant readers; reduced, for agents),
    built on first use and shared by every subscriber."""

    __slots__ = ("_reduced", "_whole", "entry")

    def __init__(self, entry: StoredEntry) -> None:
        self.entry = entry
        self._whole: Delivery | None = None
        self._reduced: Delivery | None = None

    def view(self, reduced: bool) -> Delivery:
        if reduced:
            # what an agent sees depends on the entry's type, not on which agent it is
            if self._reduced is None:
                self._reduced = delivery_of(self.entry, Reader(self.entry.tenant, ""))
            return self._reduced
        if self._whole is None:
            self._whole = delivery_of(self.entry, Reader(self.entry.tenant))
        return self._whole


class Delivery(NamedTuple):
    """An event's JSON and its Server-Sent Events frame, encoded once."""

    seq: int
    json: bytes
    frame: bytes

    @property
    def event(self) -> Event:
        """The event (decoded from its JSON at each use: for long polls and tests)."""
        return decode_event(self.json)


_Found = TypeVar("_Found", bytes, list[Delivery])


def delivery(event: Event) -> Delivery:
    return _framed(event.seq, _encode(event))


def delivery_of(entry: StoredEntry, reader: Reader) -> Delivery:
    return _framed(entry.seq, event_json(entry, reader))


def _framed(seq: int, raw: bytes) -> Delivery:
    return Delivery(seq, raw, b"id: %d\ndata: %s\n\n" % (seq, raw))


class Tail:
    """The last entries of one tenant's log read by this process. `last` is the seq of the last
    one (-1: none yet), valid once `started`; `known` the log size the hub has heard of."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.entries: deque[Viewed] = deque(maxlen=BUFFER_ENTRIES)
        self.started = False
        self.last = -1
        self.known = 0
        self.subscribers = 0
        self.idle_since = time.monotonic()
        self.generation = 0  # how many times the subscribers were woken
        self.waiters: set[asyncio.Future[None]] = set()
        self.woken_at = 0.0
        self._scheduled: asyncio.TimerHandle | None = None
        self.fetching: asyncio.Task[None] | None = None
        self.held: dict[int, StoredEntry] = {}  # this process's entries past a gap (`hold`)
        # the Server-Sent Events bytes of the whole entries after a seq, up to `last`: subscribers
        # at one position (most of them, under load) share one join (cleared when `last` moves)
        self._chunks: dict[int, tuple[bytes, int]] = {}

    def start_at(self, size: int) -> None:
        """Begin following the log from its size `size` (entries before it are read from the
        database by whoever needs them)."""
        if not self.started:
            self.started, self.last, self.known = True, size - 1, max(self.known, size)

    def after(self, seq: int) -> list[Viewed] | None:
        """The entries in memory after `seq`; None when memory does not reach back to seq + 1."""
        if not self.started:
            return None
        first = self.entries[0].entry.seq if self.entries else self.last + 1
        if seq + 1 < first:
            return None
        if seq >= self.last:
            return []
        newer = list(
            itertools.islice(reversed(self.entries), self.last - seq)
        )  # subscribers read near the end
        newer.reverse()
        return newer

    def frames_after(self, seq: int) -> tuple[bytes, int] | None:
        """The SSE frames of the whole events after `seq` (at most MAX_LIMIT) and the seq of the
        last one, built once for every subscriber at `seq`; None when memory does not reach back
        to seq + 1; empty bytes when nothing follows it yet."""
        found = self._chunks.get(seq)
        if found is not None:
            return found
        viewed = self.after(seq)
        if viewed is None:
            return None
        if not viewed:
            return b"", seq
        chosen = viewed[:MAX_LIMIT]
        found = self._chunks[seq] = (
            b"".join(item.view(False).frame for item in chosen),
            chosen[-1].entry.seq,
        )
        return found

    def extend(self, entries: list[StoredEntry]) -> None:
        """Append the entries that follow `last` (then those held past the gap they close)."""
        for entry in entries:
            if entry.seq == self.last + 1:
                self._append(entry)
        while self.held:
            entry = self.held.pop(self.last + 1, None)
            if entry is None:
                break
            self._append(entry)
        if self.held and min(self.held) <= self.last:
            self.held = {seq: entry for seq, entry in self.held.items() if seq > self.last}
        self.wake_soon()

    def _append(self, entry: StoredEntry) -> None:
        self.entries.append(Viewed(entry))
        self.last = entry.seq
        self._chunks.clear()

    def hold(self, entries: list[StoredEntry]) -> None:
        """Keep entries this process committed past a gap (another process's entries, not read
        yet): the read fills the gap only, and `extend` takes these after it."""
        if len(self.held) + len(entries) > BUFFER_ENTRIES:
            self.held.clear()  # far behind: read them back with the rest
            return
        for entry in entries:
            if entry.seq > self.last:
                self.held[entry.seq] = entry

    def read_bound(self) -> int:
        """Where the next read of missing entries stops (exclusive): at the first entry held
        past the gap, else at the log size heard of."""
        return min((seq for seq in self.held if seq > self.last), default=self.known)

    def wake_soon(self) -> None:
        """Wake the subscribers now, or WAKE_SECONDS after the last wake-up if that was sooner:
        under many small commits each subscriber then sends fewer, larger chunks."""
        if self._scheduled is not None:
            return
        delay = self.woken_at + WAKE_SECONDS - time.monotonic()
        if delay <= 0:
            self.wake()
        else:
            self._scheduled = asyncio.get_running_loop().call_later(delay, self.wake)

    def wake(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self.woken_at = time.monotonic()
        self.generation += 1
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class EventHub:
    """Tails of the tenants this process's subscribers watch, and what keeps them moving."""

    def __init__(self, db: Database, *, poll_interval: float = POLL_SECONDS) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.owners = ActionOwners()
        self.tails: dict[str, Tail] = {}
        self.closed = False
        # Set by the PostgreSQL notifier: called (tenant, size, head) for commits made in this
        # process, head being the hex leaf hash of the last entry (None when not told).
        self.publish: Callable[[str, int, str | None], None] | None = None
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="events-poll")

    async def close(self) -> None:
        """End every subscription (`HubClosed`) and stop the background work."""
        self.closed = True
        for tail in self.tails.values():
            tail.wake()
            if tail.fetching is not None:
                tail.fetching.cancel()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    # ---- wake-ups

    def committed(
        self, tenant: str, size: int, entries: list[bytes] | None = None, head: str | None = None
    ) -> None:
        """A commit in this process moved the tenant's log to `size` entries, the last of them
        `entries` as stored and the last hashing to `head` (`Ledger.on_commit`): a tail that reaches up to them takes them
        without reading the database; one that lacks entries before them (another process's)
        holds them and reads only the gap."""
        tail = self.tails.get(tenant)
        if entries and tail is not None and tail.started and tail.last + 1 <= size - len(entries):
            decoded = [decode_entry(raw) for raw in entries]
            self.owners.learn(decoded)
            if tail.last + 1 == decoded[0].seq:
                tail.extend(decoded)
                tail.known = max(tail.known, tail.last + 1)
            else:
                tail.hold(decoded)
        self.heard(tenant, size)
        if self.publish is not None:
            self.publish(tenant, size, head)

    def heard(self, tenant: str, size: int) -> None:
        """The tenant's log has (at least) `size` entries: fetch them for the subscribers."""
        tail = self.tails.get(tenant)
        if tail is None or size <= tail.known:
            return
        tail.known = size
        if tail.started and tail.last + 1 < size and (tail.fetching is None or tail.fetching.done()):
            tail.fetching = asyncio.get_running_loop().create_task(self._fetch(tail), name=f"events:{tenant}")

    async def _fetch(self, tail: Tail) -> None:
        """Read the entries the tail lacks up to the size heard of (not those it holds), one
        query per FETCH_CHUNK."""
        try:
            while not self.closed and tail.last + 1 < tail.known:
                async with self.db.read() as conn:
                    bound = tail.read_bound()
                    entries = await read_entries(conn, tail.tenant, tail.last, bound, FETCH_CHUNK)
                if not entries:  # the size heard of is not visible yet: the next poll says again
                    tail.known = tail.last + 1
                    return
                self.owners.learn(entries)
                tail.extend(entries)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database is away: subscribers wait; the next poll tries again
            log_failure(log, "could not read new entries of tenant %s", tail.tenant)
            tail.known = tail.last + 1

    async def _poll(self) -> None:
        """Every `poll_interval`: the log sizes of watched tenants (a missed wake-up only
        delays), and drop tails nobody watched for IDLE_SECONDS."""
        while True:
            await asyncio.sleep(self.poll_interval)
            now = time.monotonic()
            for tenant, tail in list(self.tails.items()):
                if tail.subscribers == 0 and now - tail.idle_since > IDLE_SECONDS:
                    del self.tails[tenant]
            watched = sorted(t for t, tail in self.tails.items() if tail.started)
            if not watched:
                continue
            try:
                async with self.db.read() as conn:
                    rows = await conn.fetch(
                        "SELECT tenant_id, size FROM audit_heads"
                        f" WHERE tenant_id IN ({', '.join('?' * len(watched))})",
                        *watched,
                    )
            except Exception:
                log_failure(log, "could not read the log sizes of watched tenants")
                continue
            for row in rows:
                self.heard(row["tenant_id"], int(row["size"]))

    # ---- subscribing

    @contextlib.asynccontextmanager
    async def subscribe(
        self, tenant: str, reader: Reader, wanted: EventFilter, after: int
    ) -> AsyncIterator[Subscription]:
        """Follow the tenant's events for `reader` from seq `after` (exclusive)."""
        tail = self.tails.get(tenant)
        if tail is None:
            tail = self.tails[tenant] = Tail(tenant)
        tail.subscribers += 1
        subscription = Subscription(self, tail, reader, wanted, after)
        try:
            yield subscription
        finally:
            subscription.end()
            tail.subscribers -= 1
            tail.idle_since = time.monotonic()


class Subscription:
    """One subscriber's position in a tenant's events. Not for concurrent use."""

    def __init__(self, hub: EventHub, tail: Tail, reader: Reader, wanted: EventFilter, after: int) -> None:
        self.hub, self.tail, self.reader, self.wanted = hub, tail, reader, wanted
        self.position = after
        self.head = 0  # the log size last seen
        self._everything = reader.agent_id is None and wanted == EventFilter()
        self._waiter: asyncio.Future[None] | None = None
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = 0.0  # when the wait in progress ends (the loop's clock)

    async def next(self, timeout: float, limit: int = MAX_LIMIT) -> list[Delivery]:
        """The next events after `position` (at most `limit`), encoded; waits up to
        `timeout` seconds for one, then returns none. Moves `position` past every entry read.

        Raises HubClosed when the process shuts down; NotFound (`tenant_not_found`) and
        DatabaseUnavailable from the database.
        """
        return await self._wait(timeout, lambda: self._read(limit))

    async def next_frames(self, timeout: float) -> bytes:
        """As `next`, the events' Server-Sent Events frames joined (empty: none in time)."""
        return await self._wait(timeout, self._read_frames)

    async def _wait(self, timeout: float, read: Callable[[], Awaitable[_Found]]) -> _Found:
        deadline = time.monotonic() + timeout
        while True:
            if self.hub.closed:
                raise HubClosed
            generation = self.tail.generation  # taken before reading, so no wake-up is lost
            before = self.position
            found = await read()
            if found:
                return found
            if before < self.position < self.head - 1 and self.tail.after(self.position) is None:
                continue  # the database has more than one scan read
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return found
            if generation == self.tail.generation:
                await self._sleep(remaining)

    async def _sleep(self, seconds: float) -> None:
        """Until the tail wakes its subscribers or `seconds` pass. One timer serves many waits: it
        is re-armed when it rings early, not replaced by each wait (a wake-up costs no timer)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._alarm_at = loop.time() + seconds
        if self._alarm is None or self._alarm.when() > self._alarm_at:
            if self._alarm is not None:
                self._alarm.cancel()
            self._alarm = loop.call_at(self._alarm_at, self._ring)
        self.tail.waiters.add(waiter)
        try:
            await waiter
        finally:
            self.tail.waiters.discard(waiter)
            self._waiter = None

    def _ring(self) -> None:
        self._alarm = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._alarm_at:
            waiter.set_result(None)
        else:  # a later wait than the one the alarm was set for
            self._alarm = loop.call_at(self._alarm_at, self._ring)

    def end(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    async def _read_frames(self) -> bytes:
        if self._everything:
            shared = self.tail.frames_after(self.position)
            if shared is not None:
                frames, self.position = shared
                self.head = max(self.head, self.tail.last + 1)
                return frames
        return b"".join(item.frame for item in await self._read(MAX_LIMIT))

    async def _read(self, limit: int) -> list[Delivery]:
        viewed = self.tail.after(self.position)
        if viewed is None:  # before the tail's memory (or the tail has not started): the database
            page = await read_page(
                self.hub.db, self.tail.tenant, self.reader, self.wanted, self.position, limit, self.hub.owners
            )
            self.position, self.head = page.next_after, max(self.head, page.head)
            self.tail.start_at(page.head)
            self.hub.heard(self.tail.tenant, page.head)
            return [delivery(event) for event in page.events]
        self.head = max(self.head, self.tail.last + 1)
        if not viewed:
            return []
        if self._everything:  # a tenant reader without filters: every entry of the tail, whole
            chosen = viewed[:limit]
            self.position = chosen[-1].entry.seq
            return [item.view(False) for item in chosen]
        owners: dict[str, str] = {}
        if needs_owners(self.reader, self.wanted):
            entries = [item.entry for item in viewed]
            owners, missing = self.hub.owners.cached(self.tail.tenant, entries)
            if missing:  # the tail saw most actions proposed: a query is rare
                async with self.hub.db.read() as conn:
                    owners = await self.hub.owners.lookup(conn, self.tail.tenant, entries)
        reduced = self.reader.agent_id is not None
        found = []
        for item in viewed:
            entry = item.entry
            self.position = entry.seq
            if self._wants(entry, owners):
                found.append(item.view(reduced))
                if len(found) >= limit:
                    break
        return found

    def _wants(self, entry: StoredEntry, owners: dict[str, str]) -> bool:
        wanted = self.wanted
        if not wanted.wants_type(entry.type):
            return False
        if wanted.action_id is not None and entry.action_id != wanted.action_id:
            return False
        owner = owners.get(entry.action_id) if entry.action_id is not None else None
        if wanted.agent_id is not None and owner != wanted.agent_id:
            return False
        return visible(entry, self.reader, owner)
