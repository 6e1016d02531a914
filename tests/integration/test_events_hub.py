"""The events hub against a real database (both backends): wake-ups are hints, the log is the
truth. A commit nobody announces arrives by the poll; a subscriber behind the tail's memory reads
the database; closing the hub ends subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from gateway.events import hub as hub_module
from gateway.events.hub import EventHub, HubClosed, Subscription
from gateway.events.view import EventFilter, Reader, decode_event, read_page
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.storage import Database, open_database
from tests.integration.helpers import make_world


@pytest.fixture
async def database(backend, client) -> AsyncIterator[Database]:
    """The test's database, opened by the test itself (the app runs in another event loop)."""
    await make_world(client)
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def note(ledger: Ledger, n: int) -> int:
    """Append one entry that nobody announces (this ledger tells no hub)."""
    (seq,) = await ledger.append("acme", Unit([EntryDraft("test.note", "test", {"n": n})]))
    return seq


async def test_a_commit_nobody_announced_arrives_by_the_poll(database: Database) -> None:
    hub = EventHub(database, poll_interval=0.1)
    hub.start()
    ledger = Ledger(database)
    try:
        async with hub.subscribe("acme", Reader("acme"), EventFilter(), 10**9) as subscription:
            assert await subscription.next(0.01) == []  # past the end: starts following the present
            subscription.position = subscription.head - 1
            seq = await note(ledger, 1)
            batch = await subscription.next(10)
            assert [item.event.seq for item in batch] == [seq]
            assert batch[0].event.data == {"n": 1}
    finally:
        await ledger.close()
        await hub.close()


async def test_a_subscriber_behind_the_tails_memory_reads_the_database(
    database: Database, monkeypatch
) -> None:
    monkeypatch.setattr(hub_module, "BUFFER_ENTRIES", 4)
    hub = EventHub(database, poll_interval=0.1)
    hub.start()
    ledger = Ledger(database)
    ledger.on_commit = hub.committed
    try:
        async with hub.subscribe("acme", Reader("acme"), EventFilter(), -1) as live:
            first = await live.next(1)
            seqs = [item.event.seq for item in first]
            assert seqs == list(range(len(seqs)))
            for n in range(12):
                await note(ledger, n)
            while live.position < live.head - 1 or len(seqs) < first[-1].event.seq + 13:
                seqs += [item.event.seq for item in await live.next(5)]
            assert len(hub.tails["acme"].entries) <= 4
        async with hub.subscribe("acme", Reader("acme"), EventFilter(), -1) as late:  # from the first entry
            again: list[int] = []
            while len(again) < len(seqs):
                again += [item.event.seq for item in await late.next(5)]
        assert again == seqs == list(range(len(seqs)))
    finally:
        await ledger.close()
        await hub.close()


async def test_the_entries_a_commit_hands_over_are_the_ones_the_database_holds(database: Database) -> None:
    hub = EventHub(database, poll_interval=3600)  # no poll: only the commits move the tail
    hub.start()
    ledger, other = Ledger(database), Ledger(database)  # `other` commits as another process would, silently
    ledger.on_commit = hub.committed
    try:
        async with hub.subscribe("acme", Reader("acme"), EventFilter(), 10**9) as subscription:
            assert await subscription.next(0.01) == []
            start = subscription.position = subscription.head - 1
            await note(ledger, 1)  # a new writer's first batch: under lock, read back by the hub
            tail = hub.tails["acme"]
            fetch = tail.fetching
            await note(ledger, 2)
            if database.supports_fast_append:  # PostgreSQL's fast path hands its entries over
                assert tail.fetching is fetch
            await note(other, 3)  # a gap the next handed-over entries must not jump
            last = await note(ledger, 4)
            seen = []
            while subscription.position < last:
                seen += [item.event for item in await subscription.next(10)]
        stored = await read_page(database, "acme", Reader("acme"), EventFilter(), start, 100, hub.owners)
        assert [event.data for event in seen] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
        assert seen == stored.events
    finally:
        await ledger.close()
        await other.close()
        await hub.close()


async def test_a_shorter_wait_after_a_longer_one_ends_at_its_own_deadline(database: Database) -> None:
    hub = EventHub(database, poll_interval=3600)
    hub.start()
    ledger = Ledger(database)
    ledger.on_commit = hub.committed
    try:
        async with hub.subscribe("acme", Reader("acme"), EventFilter(), 10**9) as subscription:
            assert await subscription.next(0.01) == []
            subscription.position = subscription.head - 1
            waiting = asyncio.ensure_future(subscription.next(3600))  # its alarm is an hour away
            await asyncio.sleep(0.1)
            seq = await note(ledger, 1)
            assert [item.event.seq for item in await asyncio.wait_for(waiting, 30)] == [seq]
            assert await asyncio.wait_for(subscription.next(0.2), 30) == []  # not an hour
            assert await asyncio.wait_for(subscription.next_frames(0.2), 30) == b""
    finally:
        await ledger.close()
        await hub.close()


def _frames(chunk: bytes) -> list[tuple[int, bytes]]:
    """(seq, event JSON) of each Server-Sent Events frame of a chunk."""
    found = []
    for frame in chunk.split(b"\n\n")[:-1]:
        id_line, data_line = frame.split(b"\n")
        found.append((int(id_line.removeprefix(b"id: ")), data_line.removeprefix(b"data: ")))
    return found


async def frames_through(subscription: Subscription, last: int) -> bytes:
    """The frames a subscriber reads until its position reaches `last` (a bounded number of reads)."""
    chunks = []
    for _ in range(50):
        if subscription.position >= last:
            return b"".join(chunks)
        chunks.append(await asyncio.wait_for(subscription.next_frames(10), 30))
    raise AssertionError(f"still at {subscription.position} of {last} after 50 reads")


async def test_whole_log_subscribers_share_one_chunk_and_a_late_one_catches_up_exactly(
    database: Database, monkeypatch
) -> None:
    monkeypatch.setattr(hub_module, "BUFFER_ENTRIES", 8)
    hub = EventHub(database, poll_interval=0.1)
    hub.start()
    ledger = Ledger(database)
    ledger.on_commit = hub.committed
    try:
        async with contextlib.AsyncExitStack() as stack:
            subscribers = [
                await stack.enter_async_context(hub.subscribe("acme", Reader("acme"), EventFilter(), 10**9))
                for _ in range(4)
            ]
            assert await subscribers[0].next(0.01) == []
            start = subscribers[0].head - 1
            for subscriber in subscribers:
                subscriber.position = start
            fast, late = subscribers[:3], subscribers[3]
            seen: list[bytes] = []
            for n in range(12):  # more entries than the tail keeps: `late` is left behind its memory
                last = await note(ledger, n)
                chunks = [await frames_through(s, last) for s in fast]
                assert chunks[0] and all(chunk == chunks[0] for chunk in chunks)  # the same bytes for all
                seen.append(chunks[0])
            caught_up = await frames_through(late, last)  # from the database, then the tail's memory
        stored = await read_page(database, "acme", Reader("acme"), EventFilter(), start, 100, hub.owners)
        shared = _frames(b"".join(seen))
        assert [seq for seq, _ in shared] == list(range(start + 1, last + 1))  # each once, in order
        assert [decode_event(data) for _, data in shared] == stored.events
        assert [decode_event(data) for _, data in _frames(caught_up)] == stored.events
        assert [seq for seq, _ in _frames(caught_up)] == [event.seq for event in stored.events]
    finally:
        await ledger.close()
        await hub.close()


async def test_closing_the_hub_ends_subscriptions(database: Database) -> None:
    hub = EventHub(database, poll_interval=0.1)
    hub.start()
    async with hub.subscribe("acme", Reader("acme"), EventFilter(), 10**9) as subscription:
        waiting = asyncio.ensure_future(subscription.next(30))
        await asyncio.sleep(0.2)
        await hub.close()
        with pytest.raises(HubClosed):
            await asyncio.wait_for(waiting, 5)


async def test_a_stream_stops_admitting_its_caller_once_the_key_is_revoked(
    backend, client, monkeypatch
) -> None:
    from types import SimpleNamespace

    from gateway.auth import Authenticator, KeyUsage
    from gateway.controllers import events as controller
    from gateway.errors import Unauthenticated

    world = await make_world(client, tenant="wayne")
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    try:
        state = SimpleNamespace(authenticator=Authenticator(db, KeyUsage(db)))
        credential = controller.Credential(state, f"Bearer {world.auditor}")
        monkeypatch.setattr(controller, "REAUTH_SECONDS", 0.0)
        await credential.check()  # still live
        keys = await client.get(
            "/v1/tenants/wayne/api-keys", headers={"Authorization": f"Bearer {world.tenant_admin}"}
        )
        auditor_key = next(k["id"] for k in keys.json() if k["role"] == "auditor")
        r = await client.delete(
            f"/v1/tenants/wayne/api-keys/{auditor_key}",
            headers={"Authorization": f"Bearer {world.tenant_admin}"},
        )
        assert r.status_code == 204, r.text
        with pytest.raises(Unauthenticated) as refused:
            await credential.check()
        assert refused.value.code == "invalid_token"
    finally:
        await db.close()
