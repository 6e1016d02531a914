"""Delivering events to webhooks: at least once, in order per webhook, from a durable position in
the log (DESIGN invariant 11: the log is the outbox; nothing is queued besides it).

Each webhook row holds `delivered_through`, the last log position it has passed. A worker (one
per gateway process, `DeliveryWorker.run`) claims due webhooks with a lease (`lease_owner`,
`lease_until_ms`, taken in one statement; on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
workers on several hosts take different webhooks and never wait on each other), reads the
events after the position as the webhook's reader sees them (`gateway.events.view`), and posts
them one at a time. Only after a 2xx does the position move, in the same commit as the record
of the attempt, and only if this worker still holds the lease and nobody moved the position
meanwhile (a replay): so a crash at any point repeats at most the event in flight, never skips
one, and two workers never deliver one webhook's events out of order while their leases hold.

A failed attempt (no 2xx, a timeout, a refused address) is recorded and retried after the
schedule's delay for that attempt (Standard Webhooks' schedule by default, with ±10 % jitter),
or after the receiver's `Retry-After` when it sends one; the events behind it wait. 410 Gone
disables the webhook at once; so does failing every attempt of the schedule (about 27 hours by
default). Disabling is an audited state change (`webhook.disabled`, an event itself); enabling
the webhook again (PATCH) resumes at the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec

from gateway import metrics
from gateway.clock import rfc3339, utc_now
from gateway.errors import AppError
from gateway.events.hub import EventHub
from gateway.events.outbound import Attempt, Sender
from gateway.events.schedule import DeliveryConfig
from gateway.events.view import ActionOwners, Event, EventFilter, Reader, read_page
from gateway.events.webhook_secrets import SecretUnreadable, signature_header, unseal
from gateway.events.webhooks import CALLBACK, tenant_secret_binding
from gateway.health import log_failure
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.storage import Conn, Database

log = logging.getLogger("verdict.webhooks")

# Deliveries made within this long share one commit of the position (see `_deliver_page`).
COMMIT_SECONDS = 0.1
_encode = msgspec.json.Encoder()

_HOOK_COLUMNS = (
    "id, tenant_id, kind, url, types, action_id, agent_id, secret, previous_secret, previous_until, enabled,"
    " delivered_through, attempts, failing_since"
)


WAKE_GAP_SECONDS = 0.02


@dataclass(slots=True)
class Claim:
    """A webhook this worker holds the lease of, as read at the start of a round."""

    row: dict[str, Any]
    reader: Reader = field(init=False)
    wanted: EventFilter = field(init=False)

    def __post_init__(self) -> None:
        row = self.row
        self.reader = Reader(row["tenant_id"], row["agent_id"])
        types = json.loads(row["types"]) if row["types"] is not None else []
        self.wanted = EventFilter(frozenset(types), row["action_id"])

    @property
    def position(self) -> int:
        return int(self.row["delivered_through"])


class LeaseLost(Exception):
    """Another worker or a change (replay, PATCH, DELETE) took the webhook from under this one."""


class DeliveryWorker:
    """Delivers every due webhook's events, in this process. Safe to run in every gateway
    process and on every host at once (leases); `wake` after a commit saves a poll's wait."""

    def __init__(self, db: Database, ledger: Ledger, key: bytes, config: DeliveryConfig) -> None:
        self.db = db
        self.ledger = ledger
        self.key = key
        self.config = config
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.sender = Sender(allow_private=config.allow_private, timeout=config.timeout)
        self.owners = ActionOwners()
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pruned = 0.0

    def wake(self) -> None:
        self._wake.set()

    def follow(self, hub: EventHub) -> None:
        """Wake on every commit the events hub hears of: this process's (`Ledger.on_commit`)
        and, on PostgreSQL, other processes' (LISTEN/NOTIFY). The poll stays, for what a
        wake-up misses."""
        heard = hub.heard

        def heard_and_wake(tenant: str, size: int) -> None:
            heard(tenant, size)
            self._wake.set()

        hub.heard = heard_and_wake  # type: ignore[method-assign]

    async def run(self) -> None:
        """Claim and deliver until cancelled; database trouble is logged and retried."""
        while True:
            try:
                await self.round()
            except Exception:  # a database outage: try again at the next poll
                log_failure(log, "webhook delivery round failed")
            # Under a stream of commits every one wakes this worker: a short gap lets the wake-ups
            # of that time share one round (one claim query, not one per group commit).
            await asyncio.sleep(WAKE_GAP_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def round(self) -> None:
        """Start a delivery task for each webhook claimed now (as many as free slots)."""
        free = self.config.concurrency - len(self._tasks)
        if free <= 0:
            return
        for row in await self.claim(free):
            task = asyncio.get_running_loop().create_task(
                self._deliver(Claim(row)), name=f"webhook:{row['id']}"
            )
            self._tasks[row["id"]] = task
            task.add_done_callback(lambda _t, webhook_id=row["id"]: self._finished(webhook_id))
        if time.monotonic() - self._pruned > 3600:
            self._pruned = time.monotonic()
            await self.prune()

    def _finished(self, webhook_id: str) -> None:
        self._tasks.pop(webhook_id, None)
        self._wake.set()  # a commit while the task was finishing found the webhook still leased

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        """Take the lease of up to `limit` enabled webhooks that are due and behind the log."""
        now_ms = _now_ms()
        due = (
            "SELECT tenant_id, id FROM webhooks w WHERE enabled = 1 AND due_ms <= ? AND lease_until_ms <= ?"
            " AND delivered_through < (SELECT size FROM audit_heads h WHERE h.tenant_id = w.tenant_id) - 1"
            " ORDER BY due_ms LIMIT ?"
        )
        async with self.db.read() as conn:  # most polls find nothing: no write transaction then
            if not await conn.fetch(due, now_ms, now_ms, 1):
                return []
        lock = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgresql" else ""
        async with self.db.transaction() as conn:
            return await conn.fetch(
                f"UPDATE webhooks SET lease_owner = ?, lease_until_ms = ? WHERE (tenant_id, id) IN ({due}{lock})"
                f" RETURNING {_HOOK_COLUMNS}",
                self.owner,
                now_ms + int(self.config.lease_seconds * 1000),
                now_ms,
                now_ms,
                limit,
            )

    async def _deliver(self, claim: Claim) -> None:
        try:
            while await self._deliver_page(claim):
                claim = await self._reread(claim)  # a PATCH may have changed the URL or types
        except LeaseLost:  # a replay or PATCH moved it: the lease (if still ours) goes back now
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log_failure(log, "delivery to webhook %s stopped; retrying at the next poll", claim.row["id"])
        with contextlib.suppress(Exception):
            await self._release(claim)

    async def _deliver_page(self, claim: Claim) -> bool:
        """Deliver one page of events in order. True when more may be waiting and the lease is
        still held; False when caught up, or an attempt failed (the next waits until due).

        The position moves after each run of deliveries of at most COMMIT_SECONDS (and before
        any failure is recorded): one durable commit per run rather than per event. A crash
        repeats at most that run, in order; it never skips."""
        tenant = claim.row["tenant_id"]
        page = await read_page(
            self.db, tenant, claim.reader, claim.wanted, claim.position, self.config.page, self.owners
        )
        signing = await self._secrets(claim)
        done: list[tuple[Event, Attempt]] = []
        committed = time.monotonic()
        for event in page.events:
            attempt = await self._post(claim, event, signing)
            if not attempt.delivered:
                if done:
                    await self._advance(claim, done[-1][0].seq, done)
                await self._failed(claim, event, attempt)
                return False
            done.append((event, attempt))
            if time.monotonic() - committed >= COMMIT_SECONDS:
                await self._advance(claim, event.seq, done)
                done, committed = [], time.monotonic()
        if done or page.next_after > claim.position:  # (entries after the last event: not for it)
            await self._advance(claim, max(page.next_after, claim.position), done)
        return page.next_after < page.head - 1

    async def _post(self, claim: Claim, event: Event, signing: list[str] | SecretUnreadable) -> Attempt:
        if isinstance(signing, SecretUnreadable):  # fail closed: nothing unsigned leaves
            log.error("webhook %s: %s", claim.row["id"], signing)
            return Attempt(None, 0, f"secret_unreadable: {signing}")
        body = _encode.encode(event)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(signing, event.id, timestamp, body),
        }
        attempt = await self.sender.post(claim.row["url"], body, headers)
        metrics.WEBHOOK_DELIVERIES.labels("delivered" if attempt.delivered else "failed").inc()
        return attempt

    async def _secrets(self, claim: Claim) -> list[str] | SecretUnreadable:
        """The secrets that sign now: the webhook's (a callback: its tenant's), and the one
        before the last rotation while its overlap lasts."""
        row = claim.row
        bound = row["id"]
        if row["kind"] == CALLBACK:
            async with self.db.read() as conn:
                found = await conn.fetchrow(
                    "SELECT secret, previous_secret, previous_until FROM webhook_tenant_secrets WHERE tenant_id = ?",
                    row["tenant_id"],
                )
            if found is None:
                return SecretUnreadable(f"tenant {row['tenant_id']!r} has no webhook secret")
            row, bound = found, tenant_secret_binding(claim.row["tenant_id"])
        stored = [row["secret"]]
        if row["previous_secret"] is not None and (row["previous_until"] or "") > rfc3339(utc_now()):
            stored.append(row["previous_secret"])
        try:
            return [unseal(self.key, value, bound) for value in stored]
        except SecretUnreadable as exc:
            return exc

    async def _advance(self, claim: Claim, seq: int, delivered: list[tuple[Event, Attempt]]) -> None:
        """Move the position to `seq` and record the deliveries made, if the lease still holds
        and nobody moved the position. Raises LeaseLost otherwise (nothing written)."""
        async with self.db.transaction() as conn:
            moved = await conn.fetchrow(
                "UPDATE webhooks SET delivered_through = ?, attempts = 0, due_ms = 0, failing_since = NULL,"
                " lease_until_ms = ? WHERE tenant_id = ? AND id = ? AND lease_owner = ? AND delivered_through = ?"
                " AND enabled = 1 RETURNING id",
                seq,
                _now_ms() + int(self.config.lease_seconds * 1000),
                claim.row["tenant_id"],
                claim.row["id"],
                self.owner,
                claim.position,
            )
            if moved is None:
                raise LeaseLost(claim.row["id"])
            if delivered:
                # the first is the event the failed attempts (if any) were at
                numbers = [int(claim.row["attempts"]) + 1] + [1] * (len(delivered) - 1)
                rows = [
                    _delivery_row(claim, event, attempt, number)[1]
                    for (event, attempt), number in zip(delivered, numbers, strict=True)
                ]
                await conn.executemany(_INSERT_DELIVERY, rows)
        claim.row.update(delivered_through=seq, attempts=0, failing_since=None)

    async def _failed(self, claim: Claim, event: Event, attempt: Attempt) -> None:
        """Record a failed attempt and when to try again; disable the webhook on 410 Gone or
        when the schedule is spent. Raises LeaseLost when the webhook was taken meanwhile."""
        row = claim.row
        failures = int(row["attempts"]) + 1
        delay = None if attempt.status_code == 410 else self.config.delay(failures, attempt.retry_after)
        now = rfc3339(utc_now())
        if delay is None:
            await self._disable(claim, event, attempt, failures)
            return
        async with self.db.transaction() as conn:
            updated = await conn.fetchrow(
                "UPDATE webhooks SET attempts = ?, due_ms = ?, failing_since = COALESCE(failing_since, ?),"
                " lease_owner = NULL, lease_until_ms = 0"
                " WHERE tenant_id = ? AND id = ? AND lease_owner = ? AND delivered_through = ? RETURNING id",
                failures,
                _now_ms() + int(delay * 1000),
                now,
                row["tenant_id"],
                row["id"],
                self.owner,
                claim.position,
            )
            if updated is None:
                raise LeaseLost(row["id"])
            await self._record(conn, claim, event, attempt, attempt_number=failures)

    async def _disable(self, claim: Claim, event: Event, attempt: Attempt, failures: int) -> None:
        """The audited end of a webhook's deliveries (`webhook.disabled`); enabling it resumes at `event`."""
        row = claim.row
        reason = "gone" if attempt.status_code == 410 else "failing"
        now = rfc3339(utc_now())
        data = {"id": row["id"], "reason": reason, "seq": event.seq, "attempts": failures,
                "status_code": attempt.status_code, "error": attempt.error, "failing_since": row["failing_since"] or now}  # fmt: skip
        delivery = _delivery_row(claim, event, attempt, failures)

        async def still_ours(conn: Conn) -> None:
            current = await conn.fetchrow(
                "SELECT lease_owner, delivered_through FROM webhooks WHERE tenant_id = ? AND id = ?",
                row["tenant_id"],
                row["id"],
            )
            if (
                current is None
                or current["lease_owner"] != self.owner
                or int(current["delivered_through"]) != claim.position
            ):
                raise _Taken("the webhook changed meanwhile")

        unit = Unit(
            [EntryDraft("webhook.disabled", "gateway", data)],
            lambda seqs: [
                ("UPDATE webhooks SET enabled = 0, disabled_reason = ?, attempts = ?, due_ms = 0,"
                 " failing_since = COALESCE(failing_since, ?), lease_owner = NULL, lease_until_ms = 0, updated_at = ?"
                 " WHERE tenant_id = ? AND id = ?", (reason, failures, now, now, row["tenant_id"], row["id"])),
                delivery,
            ],
            prepare=still_ours,
        )  # fmt: skip
        try:
            await self.ledger.append(row["tenant_id"], unit)
        except _Taken as exc:
            raise LeaseLost(row["id"]) from exc
        log.warning(
            "webhook %s disabled (%s) after %d failed attempt(s) at seq %d",
            row["id"],
            reason,
            failures,
            event.seq,
        )

    async def _record(
        self, conn: Conn, claim: Claim, event: Event, attempt: Attempt, *, attempt_number: int
    ) -> None:
        await conn.execute(_INSERT_DELIVERY, *_delivery_row(claim, event, attempt, attempt_number)[1])

    async def _reread(self, claim: Claim) -> Claim:
        """The webhook's row as it is now. Raises LeaseLost when it is no longer this worker's."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? AND id = ? AND lease_owner = ?"
                " AND enabled = 1",
                claim.row["tenant_id"],
                claim.row["id"],
                self.owner,
            )
        if row is None:
            raise LeaseLost(claim.row["id"])
        return Claim(row)

    async def _release(self, claim: Claim) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE webhooks SET lease_owner = NULL, lease_until_ms = 0"
                " WHERE tenant_id = ? AND id = ? AND lease_owner = ?",
                claim.row["tenant_id"],
                claim.row["id"],
                self.owner,
            )

    async def prune(self) -> None:
        """Forget delivery attempts older than `keep_attempts_days`."""
        cutoff = rfc3339(utc_now() - timedelta(days=self.config.keep_attempts_days))
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM webhook_deliveries WHERE attempted_at < ?", cutoff)

    async def close(self) -> None:
        """Stop delivering; hand back the leases held, so another worker resumes at once."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE webhooks SET lease_owner = NULL, lease_until_ms = 0 WHERE lease_owner = ?",
                    self.owner,
                )
        await self.sender.close()


class _Taken(AppError):
    """Inside a disabling unit: the lease or the position changed; the unit writes nothing."""


_INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, seq, attempt, status_code,"
    " latency_ms, error, attempted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _delivery_row(claim: Claim, event: Event, attempt: Attempt, number: int) -> tuple[str, tuple[Any, ...]]:
    return (
        _INSERT_DELIVERY,
        (_delivery_id(), claim.row["id"], claim.row["tenant_id"], event.id, event.seq, number,
         attempt.status_code, attempt.latency_ms, attempt.error, rfc3339(utc_now())),
    )  # fmt: skip


_last_delivery_ns = 0


def _delivery_id() -> str:
    """Ids that sort in the order attempts were recorded by this process (nanoseconds, strictly
    increasing), so the attempts log reads newest first even within one commit."""
    global _last_delivery_ns
    _last_delivery_ns = max(time.time_ns(), _last_delivery_ns + 1)
    return f"dlv_{_last_delivery_ns:019d}{secrets.token_hex(3)}"


def _now_ms() -> int:
    return int(time.time() * 1000)
