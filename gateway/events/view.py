"""Events as views of committed audit entries: what one reader may see of the tenant's log.

An event is one entry seen through a reader: `{"id": "<tenant>:<seq>", "seq", "tenant",
"type", "time", "action_id", "data"}`. Nothing is stored for events: the log is the outbox,
so a page of events is a read of the log after a seq, and resuming from any seq loses and
repeats nothing (DESIGN invariant 11).

Who sees what (the same rules as the routes that expose the entries):
- a tenant reader (tenant admin, auditor; the operator's admin) sees every entry of the
  tenant whole, as `GET /v1/tenants/{tenant}/audit/entries` shows it;
- an agent sees only the entries of its own actions (as `GET /v1/actions/{id}` hides other
  agents' actions), and of each only what that route shows it: an approval's signer, role,
  answer, kind, comment and outcome, not the signature, the signed typed data or the
  approver's request context. Entry types not listed in `AGENT_FIELDS` show an agent an empty
  `data` (fail closed: a new entry type reveals nothing until someone decides what it may).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.auth import AGENT, Principal
from gateway.errors import InvalidRequest, NotFound
from gateway.storage import Conn, Database

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Entries read per query while filtering, and at most per page: a page that filters out
# everything still answers (with `next_after` moved on) instead of scanning the whole log.
SCAN_CHUNK = 500
MAX_SCAN = 10_000
MAX_TYPES = 32
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?")
_MAX_OWNERS = 100_000

# Per entry type, the `data` members an agent may see of its own actions' entries (None: all).
AGENT_FIELDS: dict[str, frozenset[str] | None] = {
    "action.proposed": None,  # the action record, as GET /v1/actions/{id} shows it
    "verdict.issued": None,  # the signed verdict, as GET /v1/actions/{id}/verdict shows it
    "approval.granted": frozenset({"signer", "role", "approve", "kind", "comment", "outcome"}),
    "approval.rejected": frozenset({"signer", "role", "approve", "kind", "comment", "outcome"}),
    "action.expired": None,
    "action.cancelled": None,
    # an action's executions, as GET /v1/executions/{id} shows them (not which worker ran them)
    "execution.requested": frozenset(
        {"execution_id", "rail", "rail_kind", "action_hash", "verdict_digest", "verdict_expires_at"}
    ),
    "execution.submitted": frozenset({"execution_id", "reference", "attempt"}),
    "execution.succeeded": frozenset({"execution_id", "reference", "result"}),
    "execution.failed": frozenset({"execution_id", "code", "message", "reference"}),
    "execution.rollback_requested": frozenset({"execution_id", "reason", "by"}),
    "execution.rolled_back": frozenset({"execution_id", "reason", "by", "reference"}),
    "execution.rollback_failed": frozenset({"execution_id", "reason", "by", "code", "message"}),
}


class Event(msgspec.Struct, frozen=True):
    """One committed audit entry as a reader sees it. `id` is unique across tenants and is the
    receiver's idempotency key; `seq` orders a tenant's events and resumes a stream."""

    id: str
    seq: int
    tenant: str
    type: str
    time: str
    action_id: str | None
    data: dict[str, Any]


class EventPage(msgspec.Struct, frozen=True):
    """Events after a position. `next_after` is where the next read resumes (the last entry
    read, which may be past the last event when filters skipped entries); `head` is the log's
    size when read, so `next_after == head - 1` means nothing more is committed yet."""

    events: list[Event]
    next_after: int
    head: int


class StoredEntry(msgspec.Struct, frozen=True, gc=False):
    """The members of a stored v1 entry (`audit.entry`) that events read. `data` stays the
    stored JSON bytes, decoded only for a reader who sees it reduced or as objects
    (`entry_data`): a tenant reader's event copies them (`event_json`). Holding no containers,
    entries kept in memory (the events hub's tails) cost the cyclic collector nothing."""

    seq: int
    tenant: str
    type: str
    time: str
    action_id: str | None
    actor: str
    data: msgspec.Raw


class _WholeEvent(msgspec.Struct, gc=False):
    """`Event` (same members, same order) with `data` as the stored bytes, for encoding."""

    id: str
    seq: int
    tenant: str
    type: str
    time: str
    action_id: str | None
    data: msgspec.Raw


class _Proposer(msgspec.Struct):
    agent: Any = None


decode_entry = msgspec.json.Decoder(StoredEntry).decode
decode_event = msgspec.json.Decoder(Event).decode
_decode_data = msgspec.json.Decoder(dict[str, Any]).decode
_decode_proposer = msgspec.json.Decoder(_Proposer).decode
_encode = msgspec.json.Encoder().encode


def entry_data(entry: StoredEntry) -> dict[str, Any]:
    """The entry's `data` as objects (decoded at each call)."""
    return _decode_data(entry.data)


@dataclass(frozen=True, slots=True)
class Reader:
    """Who an event is shown to: a tenant reader (`agent_id` None) sees the tenant's log whole;
    an agent sees only its own actions' entries, reduced (`AGENT_FIELDS`)."""

    tenant_id: str
    agent_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, tenant_id: str) -> Reader:
        """The reader for a caller `gateway.authz` admitted to `tenant_id`'s events."""
        return cls(tenant_id, principal.agent_id if principal.role == AGENT else None)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants: by type (exact, or a prefix as `execution.*`), of one
    action, of one agent's actions. Empty: every event the reader may see."""

    types: frozenset[str] = frozenset()
    action_id: str | None = None
    agent_id: str | None = None

    @classmethod
    def parse(
        cls, types: str | Sequence[str] | None, action_id: str | None = None, agent_id: str | None = None
    ) -> EventFilter:
        """`types` as a comma-separated string or a list. Raises InvalidRequest (`invalid_filter`)."""
        names = types.split(",") if isinstance(types, str) else list(types or [])
        names = [name.strip() for name in names if name.strip()]
        if len(names) > MAX_TYPES:
            raise InvalidRequest(f"at most {MAX_TYPES} types", code="invalid_filter")
        for name in names:
            if len(name) > 64 or not _TYPE.fullmatch(name):
                raise InvalidRequest(
                    f"type {name[:64]!r} is not an event type (e.g. action.proposed or execution.*)",
                    code="invalid_filter",
                )
        for label, value in (("action_id", action_id), ("agent_id", agent_id)):
            if value is not None and not 0 < len(value) <= 128:
                raise InvalidRequest(f"{label} must be 1-128 characters", code="invalid_filter")
        return cls(frozenset(names), action_id or None, agent_id or None)

    def wants_type(self, entry_type: str) -> bool:
        if not self.types:
            return True
        if entry_type in self.types:
            return True
        return any(t.endswith(".*") and entry_type.startswith(t[:-1]) for t in self.types)

    @property
    def needs_owner(self) -> bool:
        return self.agent_id is not None


def event_of(entry: StoredEntry, reader: Reader) -> Event:
    """The event of one committed entry, its `data` reduced to what `reader` may see.

    Does not decide whether the reader may see the entry at all: `visible` does (it needs the
    owner of the entry's action)."""
    data = entry_data(entry)
    if reader.agent_id is not None:
        fields = AGENT_FIELDS.get(entry.type, frozenset())
        if fields is not None:
            data = {key: value for key, value in data.items() if key in fields}
    return Event(
        f"{entry.tenant}:{entry.seq}", entry.seq, entry.tenant, entry.type, entry.time, entry.action_id, data
    )


def event_json(entry: StoredEntry, reader: Reader) -> bytes:
    """The JSON of `event_of(entry, reader)`. A tenant reader's `data` is the stored bytes, copied
    without being decoded (the same JSON value; in the stored entry's canonical form)."""
    if reader.agent_id is not None:
        return _encode(event_of(entry, reader))
    whole = _WholeEvent(
        f"{entry.tenant}:{entry.seq}",
        entry.seq,
        entry.tenant,
        entry.type,
        entry.time,
        entry.action_id,
        entry.data,
    )
    return _encode(whole)


def visible(entry: StoredEntry, reader: Reader, owner: str | None) -> bool:
    """Whether `reader` may see `entry`; `owner` is the agent of the entry's action (None when
    the entry is about no action or the action is unknown)."""
    if entry.tenant != reader.tenant_id:
        return False
    if reader.agent_id is None:
        return True
    return entry.action_id is not None and owner == reader.agent_id


def select(
    entries: Iterable[StoredEntry], reader: Reader, wanted: EventFilter, owners: Mapping[str, str]
) -> list[Event]:
    """The events of `entries` that `reader` may see and `wanted` selects, in order. `owners`
    maps action ids to their agents (`ActionOwners.lookup`)."""
    events = []
    for entry in entries:
        if not wanted.wants_type(entry.type):
            continue
        if wanted.action_id is not None and entry.action_id != wanted.action_id:
            continue
        owner = owners.get(entry.action_id) if entry.action_id is not None else None
        if wanted.agent_id is not None and owner != wanted.agent_id:
            continue
        if visible(entry, reader, owner):
            events.append(event_of(entry, reader))
    return events


def needs_owners(reader: Reader, wanted: EventFilter) -> bool:
    """Whether selecting for this reader and filter needs the owners of the entries' actions."""
    return reader.agent_id is not None or wanted.needs_owner


class ActionOwners:
    """Which agent proposed each action: read once, kept (an action never changes agent).
    Safe for concurrent use by the tasks of one event loop."""

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], str] = {}

    def learn(self, entries: Iterable[StoredEntry]) -> None:
        """Note the owners that `action.proposed` entries name (no query needed for them)."""
        for entry in entries:
            if entry.type == "action.proposed" and entry.action_id is not None:
                agent = _decode_proposer(entry.data).agent
                if isinstance(agent, str):
                    self._remember(entry.tenant, entry.action_id, agent)

    def cached(self, tenant: str, entries: Sequence[StoredEntry]) -> tuple[dict[str, str], list[str]]:
        """The owners known without a query (action id -> agent), and the action ids not known."""
        self.learn(entries)
        found: dict[str, str] = {}
        missing: set[str] = set()
        for entry in entries:
            if entry.action_id is not None and entry.action_id not in found:
                owner = self._owners.get((tenant, entry.action_id))
                if owner is None:
                    missing.add(entry.action_id)
                else:
                    found[entry.action_id] = owner
        return found, sorted(missing)

    async def lookup(self, conn: Conn, tenant: str, entries: Sequence[StoredEntry]) -> dict[str, str]:
        """action id -> agent for the actions `entries` are about (unknown ones are left out)."""
        found, missing = self.cached(tenant, entries)
        for at in range(0, len(missing), 400):
            chunk = missing[at : at + 400]
            rows = await conn.fetch(
                f"SELECT id, agent_id FROM actions WHERE tenant_id = ? AND id IN ({', '.join('?' * len(chunk))})",
                tenant,
                *chunk,
            )
            for row in rows:
                found[row["id"]] = row["agent_id"]
                self._remember(tenant, row["id"], row["agent_id"])
        return found

    def _remember(self, tenant: str, action_id: str, agent_id: str) -> None:
        if len(self._owners) >= _MAX_OWNERS:
            self._owners.clear()
        self._owners[(tenant, action_id)] = agent_id


def check_position(after: int, limit: int) -> None:
    """Raises InvalidRequest (`invalid_range`) unless after >= -1 and 1 <= limit <= MAX_LIMIT."""
    if not -1 <= after <= 2**63 - 1:
        raise InvalidRequest("after must be a seq (-1: from the first entry)", code="invalid_range")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be 1-{MAX_LIMIT}", code="invalid_range")


async def log_size(conn: Conn, tenant: str) -> int:
    """The number of entries committed to the tenant's log. Raises NotFound (`tenant_not_found`)."""
    row = await conn.fetchrow("SELECT size FROM audit_heads WHERE tenant_id = ?", tenant)
    if row is None:
        raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
    return int(row["size"])


async def read_entries(conn: Conn, tenant: str, after: int, before: int, limit: int) -> list[StoredEntry]:
    """Decoded entries with after < seq < before, in order, at most `limit`."""
    rows = await conn.fetch(
        "SELECT entry FROM audit_entries WHERE tenant_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
        tenant,
        after,
        before,
        limit,
    )
    return [decode_entry(bytes(row["entry"])) for row in rows]


async def read_events(
    db: Database,
    tenant: str,
    reader: Reader,
    *,
    after: int = -1,
    types: str | Sequence[str] | None = None,
    action_id: str | None = None,
    agent_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    owners: ActionOwners | None = None,
) -> EventPage:
    """A page of the events after seq `after` that `reader` may see and the filters select.

    Reads at most MAX_SCAN entries: a page may hold fewer than `limit` events (even none) with
    `next_after` moved on; read again from `next_after` for more. Raises InvalidRequest
    (`invalid_range`, `invalid_filter`), NotFound (`tenant_not_found`), DatabaseUnavailable.
    """
    check_position(after, limit)
    wanted = EventFilter.parse(types, action_id, agent_id)
    return await read_page(db, tenant, reader, wanted, after, limit, owners or ActionOwners())


async def read_page(
    db: Database,
    tenant: str,
    reader: Reader,
    wanted: EventFilter,
    after: int,
    limit: int,
    owners: ActionOwners,
) -> EventPage:
    """`read_events` with its arguments checked. Raises NotFound, DatabaseUnavailable."""
    events: list[Event] = []
    position = after
    async with db.read() as conn:
        head = await log_size(conn, tenant)
        scanned = 0
        while len(events) < limit and position < head - 1 and scanned < MAX_SCAN:
            entries = await read_entries(conn, tenant, position, head, SCAN_CHUNK)
            if not entries:
                break
            scanned += len(entries)
            found = await owners.lookup(conn, tenant, entries) if needs_owners(reader, wanted) else {}
            for entry in entries:  # stop exactly at `limit` events: the rest is the next page's
                selected = select([entry], reader, wanted, found)
                position = entry.seq
                events.extend(selected)
                if len(events) >= limit:
                    break
    return EventPage(events, position, head)
