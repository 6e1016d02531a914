"""Webhook endpoints (Standard Webhooks v1): create, read, change, delete, rotate the secret,
replay from a log position, the log of delivery attempts; and proposals' callbacks.

Every change is a ledger `Unit`, so the row and its audit entry commit together:
`webhook.created`, `webhook.updated`, `webhook.deleted`, `webhook.secret_rotated`,
`webhook.replayed` (and `webhook.disabled`, written by `gateway.events.delivery`). Entries
name the URL's origin only (scheme://host[:port]): a path or query may hold a token.

Two kinds of webhook:
- `endpoint`: made by a tenant admin; its own `whsec_…` secret, shown once; it receives the
  tenant's events as a tenant admin sees them, from the one after its creation on.
- `callback`: made by a proposal's `callback_url` (one per action, id `wh_<action id>`); it
  receives that action's events as its agent sees them, from `action.proposed` on, signed with
  the tenant's default secret (`webhook_tenant_secrets`, created on first use, revealed once to
  a tenant admin by `reveal_tenant_secret`, replaced by `rotate_tenant_secret`).

Secrets are sealed at rest (`gateway.events.webhook_secrets`). Delivery reads the rows this
module writes; the columns it owns (position, attempts, lease) are documented in the migration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec

from gateway.auth import Principal
from gateway.clock import new_id, rfc3339, utc_now
from gateway.errors import AppError, Conflict, InvalidRequest, NotFound, Unavailable, Unprocessable
from gateway.events import webhook_schemas as wire
from gateway.events.outbound import check_url, resolve
from gateway.events.view import EventFilter
from gateway.events.webhook_secrets import SecretUnreadable, new_secret, seal, unseal
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.storage import Conn, Database

ENDPOINT, CALLBACK = "endpoint", "callback"
MAX_ENDPOINTS = 100  # per tenant; callbacks are not counted (one per proposal that asks)
ROTATION_OVERLAP = timedelta(hours=24)
_COLUMNS = (
    "id, tenant_id, kind, url, types, action_id, agent_id, enabled, disabled_reason, delivered_through,"
    " attempts, due_ms, failing_since, previous_until, created_at, updated_at"
)
_DELIVERY_COLUMNS = "id, event_id, seq, attempt, status_code, latency_ms, error, attempted_at"


def tenant_secret_binding(tenant_id: str) -> str:
    """What the tenant's default secret is sealed to."""
    return f"tenant:{tenant_id}"


def check_types(types: list[str] | None) -> list[str] | None:
    """Event types to deliver: exact (`action.proposed`) or a family (`action.*`), as the event
    stream's filter reads them; None: every type. Raises Unprocessable (`invalid_event_types`)."""
    if types is None:
        return None
    try:
        parsed = EventFilter.parse(types)
    except InvalidRequest as exc:
        raise Unprocessable(exc.detail, code="invalid_event_types", field="types") from exc
    if not parsed.types or len(parsed.types) != len(types):
        raise Unprocessable(
            "types must be distinct, non-empty event types", code="invalid_event_types", field="types"
        )
    return sorted(parsed.types)


def origin_of(url: str) -> str:
    """What the log records of a URL: scheme://host[:port]."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def webhook_view(row: dict[str, Any]) -> wire.Webhook:
    due = int(row["due_ms"])
    failing = int(row["attempts"]) > 0
    return wire.Webhook(
        id=row["id"], tenant_id=row["tenant_id"], kind=row["kind"], url=row["url"],
        types=json.loads(row["types"]) if row["types"] is not None else None,
        action_id=row["action_id"], enabled=bool(row["enabled"]), disabled_reason=row["disabled_reason"],
        delivered_through=int(row["delivered_through"]), failed_attempts=int(row["attempts"]),
        next_attempt_at=rfc3339_ms(due) if failing and row["enabled"] else None,
        failing_since=row["failing_since"], previous_secret_until=row["previous_until"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )  # fmt: skip


def rfc3339_ms(unix_ms: int) -> str:
    return rfc3339(datetime.fromtimestamp(unix_ms / 1000, UTC))


class _AlreadyRegistered(AppError):
    """Inside a callback unit: the action's callback exists already (a repeated proposal)."""


def _not_found(webhook_id: str) -> NotFound:
    return NotFound(f"webhook {webhook_id!r} not found", code="webhook_not_found")


class WebhookService:
    """The routes' side of webhooks. Safe for concurrent use by the tasks of one event loop;
    every change is serialized with the tenant's other changes by its chain writer."""

    def __init__(self, db: Database, ledger: Ledger, key: bytes, *, allow_private: bool) -> None:
        self.db = db
        self.ledger = ledger
        self.key = key
        self.allow_private = allow_private

    async def check_target(self, url: str, field: str = "url") -> str:
        """Raises Unprocessable (`invalid_webhook_url`, `webhook_target_refused`,
        `webhook_target_unresolvable`), Unavailable (`dns_unavailable`)."""
        await resolve(
            check_url(url, allow_private=self.allow_private, field=field), allow_private=self.allow_private
        )
        return url

    async def _row(self, conn: Conn, tenant_id: str, webhook_id: str) -> dict[str, Any]:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM webhooks WHERE tenant_id = ? AND id = ?", tenant_id, webhook_id
        )
        if row is None:
            raise _not_found(webhook_id)
        return row

    async def get(self, tenant_id: str, webhook_id: str) -> wire.Webhook:
        """Raises NotFound (`webhook_not_found`)."""
        async with self.db.read() as conn:
            return webhook_view(await self._row(conn, tenant_id, webhook_id))

    async def list(self, tenant_id: str, kind: str, limit: int, after: str | None) -> wire.WebhookPage:
        """The tenant's webhooks of `kind`, by id, `limit` at a time after the id `after`."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM webhooks WHERE tenant_id = ? AND kind = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                tenant_id,
                kind,
                after or "",
                limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return wire.WebhookPage([webhook_view(r) for r in rows], rows[-1]["id"] if more else None)

    async def create(
        self, principal: Principal, tenant_id: str, body: wire.CreateWebhook
    ) -> wire.CreatedWebhook:
        """Raises Unprocessable (URL, types), NotFound (`action_not_found` for another tenant's
        or a missing action), Conflict (`too_many_webhooks`)."""
        url = await self.check_target(body.url)
        types = check_types(body.types)
        if body.action_id is not None:
            async with self.db.read() as conn:
                found = await conn.fetchrow(
                    "SELECT 1 AS x FROM actions WHERE id = ? AND tenant_id = ?", body.action_id, tenant_id
                )
            if found is None:
                raise NotFound(f"action {body.action_id!r} not found", code="action_not_found")
        webhook_id, secret, now = new_id("wh"), new_secret(), rfc3339(utc_now())

        async def refuse_too_many(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT COUNT(*) AS n FROM webhooks WHERE tenant_id = ? AND kind = ?", tenant_id, ENDPOINT
            )
            if row is not None and int(row["n"]) >= MAX_ENDPOINTS:
                raise Conflict(
                    f"a tenant may have at most {MAX_ENDPOINTS} webhooks", code="too_many_webhooks"
                )

        data = {"id": webhook_id, "kind": ENDPOINT, "endpoint": origin_of(url), "types": types,
                "action_id": body.action_id}  # fmt: skip
        row = {"id": webhook_id, "tenant_id": tenant_id, "kind": ENDPOINT, "url": url,
               "types": json.dumps(types) if types is not None else None, "action_id": body.action_id,
               "agent_id": None, "secret": seal(self.key, secret, webhook_id), "enabled": 1,
               "created_at": now, "updated_at": now}  # fmt: skip

        def writes(seqs: list[int]) -> list[tuple[str, tuple[Any, ...]]]:
            # from the event after its own creation on (replay reaches back further)
            return [_insert_webhook({**row, "delivered_through": seqs[0]})]

        unit = Unit([EntryDraft("webhook.created", principal.actor, data)], writes, prepare=refuse_too_many,
                    credential=principal.credential)  # fmt: skip
        await self.ledger.append(tenant_id, unit)
        view = await self.get(tenant_id, webhook_id)
        return wire.CreatedWebhook(**msgspec.structs.asdict(view), secret=secret)

    async def update(
        self, principal: Principal, tenant_id: str, webhook_id: str, body: wire.UpdateWebhook
    ) -> wire.Webhook:
        """Change the URL, the types or whether it is enabled. Raises NotFound, Unprocessable."""
        sets: dict[str, Any] = {}
        data: dict[str, Any] = {"id": webhook_id}
        if body.url is not msgspec.UNSET:
            sets["url"] = await self.check_target(body.url)
            data["endpoint"] = origin_of(body.url)
        if body.types is not msgspec.UNSET:
            types = check_types(body.types)
            sets["types"] = json.dumps(types) if types is not None else None
            data["types"] = types
        if body.enabled is not msgspec.UNSET:
            data["enabled"] = body.enabled
            sets["enabled"] = 1 if body.enabled else 0
            # enabling resumes at the event delivery stopped at, as if it had not failed yet
            sets.update(disabled_reason=None, attempts=0, due_ms=0, failing_since=None)
            if not body.enabled:
                sets["disabled_reason"] = "disabled_by_admin"
        await self._change(principal, tenant_id, webhook_id, "webhook.updated", data, sets)
        return await self.get(tenant_id, webhook_id)

    async def replay(
        self, principal: Principal, tenant_id: str, webhook_id: str, body: wire.ReplayWebhook
    ) -> wire.Webhook:
        """Deliver again every event after `body.after`. Raises NotFound, InvalidRequest
        (`invalid_range` for a position beyond the log)."""
        after = body.after

        async def check_position(conn: Conn) -> None:
            head = await conn.fetchrow("SELECT size FROM audit_heads WHERE tenant_id = ?", tenant_id)
            size = int(head["size"]) if head is not None else 0
            if not -1 <= after < size:
                raise Unprocessable(f"need -1 <= after < {size}, the log's size", code="invalid_range")

        # The lease goes too: a worker delivering now must not move the position on (even when
        # `after` is where it started), so the replay begins at once, from `after`.
        sets = {"delivered_through": after, "attempts": 0, "due_ms": 0, "failing_since": None,
                "lease_owner": None, "lease_until_ms": 0}  # fmt: skip
        await self._change(principal, tenant_id, webhook_id, "webhook.replayed", {"id": webhook_id, "after": after},
                           sets, check_position)  # fmt: skip
        return await self.get(tenant_id, webhook_id)

    async def rotate_secret(
        self, principal: Principal, tenant_id: str, webhook_id: str
    ) -> wire.RotatedSecret:
        """A new secret; the current one keeps signing too for ROTATION_OVERLAP. Raises
        NotFound, Conflict (`callback_uses_tenant_secret` for a callback)."""
        secret, now = new_secret(), utc_now()
        until = rfc3339(now + ROTATION_OVERLAP)
        current: dict[str, Any] = {}

        async def read_current(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT kind, secret FROM webhooks WHERE tenant_id = ? AND id = ?", tenant_id, webhook_id
            )
            if row is None:
                raise _not_found(webhook_id)
            if row["kind"] != ENDPOINT:
                raise Conflict(
                    "a callback signs with the tenant's secret", code="callback_uses_tenant_secret"
                )
            current.update(row)

        def writes(seqs: list[int]) -> list[tuple[str, tuple[Any, ...]]]:
            return [
                (
                    "UPDATE webhooks SET secret = ?, previous_secret = ?, previous_until = ?, updated_at = ?"
                    " WHERE tenant_id = ? AND id = ?",
                    (seal(self.key, secret, webhook_id), current["secret"], until, rfc3339(now), tenant_id,
                     webhook_id),
                )
            ]  # fmt: skip

        data = {"id": webhook_id, "previous_secret_until": until}
        unit = Unit([EntryDraft("webhook.secret_rotated", principal.actor, data)], writes, prepare=read_current,
                    credential=principal.credential)  # fmt: skip
        await self.ledger.append(tenant_id, unit)
        return wire.RotatedSecret(webhook_id, secret, until)

    async def delete(self, principal: Principal, tenant_id: str, webhook_id: str) -> None:
        """Delete the webhook and its attempts log; nothing more is sent. Raises NotFound."""

        async def exists(conn: Conn) -> None:
            await self._row(conn, tenant_id, webhook_id)

        unit = Unit(
            [EntryDraft("webhook.deleted", principal.actor, {"id": webhook_id})],
            lambda seqs: [
                (
                    "DELETE FROM webhook_deliveries WHERE tenant_id = ? AND webhook_id = ?",
                    (tenant_id, webhook_id),
                ),
                ("DELETE FROM webhooks WHERE tenant_id = ? AND id = ?", (tenant_id, webhook_id)),
            ],
            prepare=exists,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)

    async def deliveries(
        self, tenant_id: str, webhook_id: str, limit: int, before: str | None
    ) -> wire.DeliveryPage:
        """The webhook's delivery attempts, newest first. Raises NotFound."""
        async with self.db.read() as conn:
            await self._row(conn, tenant_id, webhook_id)
            rows = await conn.fetch(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = ? AND webhook_id = ?"
                + (" AND id < ?" if before else "")
                + " ORDER BY id DESC LIMIT ?",
                *(
                    (tenant_id, webhook_id, before, limit + 1)
                    if before
                    else (tenant_id, webhook_id, limit + 1)
                ),
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return wire.DeliveryPage([wire.Delivery(**r) for r in rows], rows[-1]["id"] if more else None)

    async def _change(
        self,
        principal: Principal,
        tenant_id: str,
        webhook_id: str,
        entry_type: str,
        data: dict[str, Any],
        sets: dict[str, Any],
        check: Any = None,
    ) -> None:
        """One audited UPDATE of a webhook row. Raises NotFound, and what `check` raises."""

        async def prepare(conn: Conn) -> None:
            await self._row(conn, tenant_id, webhook_id)
            if check is not None:
                await check(conn)

        sets = {**sets, "updated_at": rfc3339(utc_now())}
        assignments = ", ".join(f"{column} = ?" for column in sets)  # columns: constants of this module
        statement = (
            f"UPDATE webhooks SET {assignments} WHERE tenant_id = ? AND id = ?",
            (*sets.values(), tenant_id, webhook_id),
        )
        unit = Unit([EntryDraft(entry_type, principal.actor, data)], lambda seqs: [statement], prepare=prepare,
                    credential=principal.credential)  # fmt: skip
        await self.ledger.append(tenant_id, unit)

    # -- callbacks and the tenant's default secret ---------------------------------------------

    async def register_callback(self, principal: Principal, action_id: str, url: str, first_seq: int) -> None:
        """The webhook of a proposal's `callback_url`: that action's events, from `first_seq` (its
        `action.proposed`) on, as its agent sees them. Repeating it (an idempotent replay of the
        proposal) changes nothing. Creates the tenant's default secret on first use."""
        tenant_id = principal.tenant_id or ""
        webhook_id, now = f"wh_{action_id}", rfc3339(utc_now())
        secret = new_secret()

        async def refuse_repeat(conn: Conn) -> None:
            found = await conn.fetchrow(
                "SELECT 1 AS x FROM webhooks WHERE tenant_id = ? AND id = ?", tenant_id, webhook_id
            )
            if found is not None:
                raise _AlreadyRegistered("already registered")

        row = {"id": webhook_id, "tenant_id": tenant_id, "kind": CALLBACK, "url": url, "types": None,
               "action_id": action_id, "agent_id": principal.agent_id, "secret": None, "enabled": 1,
               "created_at": now, "updated_at": now, "delivered_through": first_seq - 1}  # fmt: skip
        data = {"id": webhook_id, "kind": CALLBACK, "endpoint": origin_of(url), "action_id": action_id}
        unit = Unit(
            [EntryDraft("webhook.created", principal.actor, data)],
            lambda seqs: [
                _insert_webhook(row),
                (
                    "INSERT INTO webhook_tenant_secrets (tenant_id, secret, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (tenant_id) DO NOTHING",
                    (tenant_id, seal(self.key, secret, tenant_secret_binding(tenant_id)), now),
                ),
            ],
            prepare=refuse_repeat,
            credential=principal.credential,
        )
        try:
            await self.ledger.append(tenant_id, unit)
        except _AlreadyRegistered:
            pass

    async def reveal_tenant_secret(self, principal: Principal, tenant_id: str) -> wire.TenantSecret:
        """The tenant's default secret, created if there is none yet; only once. Raises
        Conflict (`tenant_secret_revealed`: rotate it to get a new one you can read)."""
        return await self._tenant_secret(principal, tenant_id, rotate=False)

    async def rotate_tenant_secret(self, principal: Principal, tenant_id: str) -> wire.TenantSecret:
        """A new default secret (shown once); the one before it keeps signing for ROTATION_OVERLAP."""
        return await self._tenant_secret(principal, tenant_id, rotate=True)

    async def _tenant_secret(
        self, principal: Principal, tenant_id: str, *, rotate: bool
    ) -> wire.TenantSecret:
        now = utc_now()
        fresh = new_secret()
        binding = tenant_secret_binding(tenant_id)
        found: dict[str, Any] = {}

        async def read(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT secret, revealed_at, created_at FROM webhook_tenant_secrets WHERE tenant_id = ?",
                tenant_id,
            )
            if row is not None and row["revealed_at"] is not None and not rotate:
                raise Conflict(
                    "the tenant's webhook secret was revealed already; rotate it to get a new one",
                    code="tenant_secret_revealed",
                )
            found.update(row or {})
            if row is not None and not rotate:  # open it before it counts as revealed
                try:
                    found["plain"] = unseal(self.key, row["secret"], binding)
                except SecretUnreadable as exc:  # sealed under another host's key: share the file
                    raise Unavailable(str(exc), code="webhook_key_mismatch") from exc

        def writes(seqs: list[int]) -> list[tuple[str, tuple[Any, ...]]]:
            stamp = rfc3339(now)
            if not found:
                return [("INSERT INTO webhook_tenant_secrets (tenant_id, secret, revealed_at, created_at)"
                         " VALUES (?, ?, ?, ?)", (tenant_id, seal(self.key, fresh, binding), stamp, stamp))]  # fmt: skip
            if not rotate:
                return [
                    (
                        "UPDATE webhook_tenant_secrets SET revealed_at = ? WHERE tenant_id = ?",
                        (stamp, tenant_id),
                    )
                ]
            return [("UPDATE webhook_tenant_secrets SET secret = ?, previous_secret = ?, previous_until = ?,"
                     " revealed_at = ?, created_at = ? WHERE tenant_id = ?",
                     (seal(self.key, fresh, binding), found["secret"], rfc3339(now + ROTATION_OVERLAP), stamp,
                      stamp, tenant_id))]  # fmt: skip

        entry = "webhook.tenant_secret_rotated" if rotate else "webhook.tenant_secret_revealed"
        unit = Unit(
            [EntryDraft(entry, principal.actor, {})], writes, prepare=read, credential=principal.credential
        )
        await self.ledger.append(tenant_id, unit)
        if found and not rotate:
            return wire.TenantSecret(found["plain"], found["created_at"], None)
        until = rfc3339(now + ROTATION_OVERLAP) if found else None
        return wire.TenantSecret(fresh, rfc3339(now), until)


def _insert_webhook(row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    columns = ("id", "tenant_id", "kind", "url", "types", "action_id", "agent_id", "secret", "enabled",
               "delivered_through", "created_at", "updated_at")  # fmt: skip
    sql = f"INSERT INTO webhooks ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    return sql, tuple(row[c] for c in columns)
