"""What a caller may do with an action right now: the `operations` of its record.

An operation is offered when (1) the caller may call its route at all (its role is in the route's
row of `gateway.authz.ACCESS`; for approve and reject, the `signer` is a current approver holding
the role) and (2) the check that route runs on the action's state passes now. The checks are the
routes' own `check_*` functions, imported from the services that run them, so the list never
offers what a route refuses for a reason the gateway's records hold. What they do not hold it
cannot foresee: a rail's configuration or answer (execute: 422 `rail_*`), the signature itself,
a contract wallet's chain, and changes after the answer (another caller acting first).

| name | route | who | offered while |
|---|---|---|---|
| `verdict` | GET /v1/actions/{id}/verdict | agent, tenant admin, auditor | the action has a signed verdict |
| `cancel` | DELETE /v1/actions/{id} | agent, tenant admin | pending approval |
| `execute` | POST /v1/actions/{id}/execute | agent, tenant admin | allowed, verdict unexpired, no execution but failed ones |
| `rollback` | POST /v1/actions/{id}/rollback | tenant admin | its execution succeeded, no rollback under way, the rail reverses |
| `approve`, `reject` | POST /v1/actions/{id}/approve, …/reject | a signer (no token) | pending, per role the signer holds that counts, not answered yet |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from gateway import schemas
from gateway.auth import Principal
from gateway.authz import access_for
from gateway.clock import utc_now
from gateway.errors import AppError
from gateway.services import approvals as answering
from gateway.services import executions as executing
from gateway.services import lifecycle
from gateway.services.actions import ActionService
from gateway.services.rails import RailService
from gateway.services.signatures import check_approver
from gateway.services.validation import checksum_address
from gateway.storage import Database

_encode = msgspec.json.Encoder()
_ACTION = "/v1/actions/{action_id}"
_APPROVER_SQL = "SELECT address, roles, kind, removed_at FROM approvers WHERE tenant_id = ? AND address = ?"


def _passes(check: Callable[..., Any], *args: Any) -> bool:
    try:
        check(*args)
    except AppError:
        return False
    return True


def _may(principal: Principal | None, method: str, route: str) -> bool:
    access = access_for(method, _ACTION + route)
    return principal is not None and access is not None and principal.role in access.roles


def row_of(record: schemas.ActionRecord) -> dict[str, Any]:
    """The record in the form the routes' checks read the stored action."""
    verdict, required = record.signed_verdict, record.approvals_required
    return {
        "id": record.action_id,
        "status": record.status,
        "approval_expires_at": record.approval_expires_at,
        "signed_verdict": _encode.encode(verdict).decode() if verdict is not None else None,
        "approvals_required": _encode.encode(required).decode() if required else None,
    }


def live_execution(record: schemas.ActionRecord) -> dict[str, Any] | None:
    """The action's execution that has not failed (at most one: `executions_one_live`)."""
    for execution in record.executions:
        if execution.status != executing.FAILED:
            rollback = execution.rollback.status if execution.rollback is not None else None
            return {"id": execution.execution_id, "status": execution.status, "rollback_status": rollback,
                    "rail": execution.rail}  # fmt: skip
    return None


def caller_operations(
    principal: Principal, record: schemas.ActionRecord, now: datetime, reversible: bool
) -> list[schemas.Operation]:
    """What `principal` (who may read the record) may do with it at `now`; `reversible`: whether
    the rail of its execution can compensate a payment."""
    row, live, path = row_of(record), live_execution(record), f"/v1/actions/{record.action_id}"
    found = []
    if _may(principal, "GET", "/verdict") and _passes(answering.check_verdict_available, record):
        found.append(schemas.Operation("verdict", "GET", path + "/verdict"))
    if _may(principal, "DELETE", "") and _passes(answering.check_pending, row):
        found.append(schemas.Operation("cancel", "DELETE", path))
    if (
        _may(principal, "POST", "/execute")
        and _passes(executing.check_executable, row, now)
        and _passes(executing.check_not_executed, live)
    ):
        found.append(schemas.Operation("execute", "POST", path + "/execute"))
    if (
        live is not None
        and _may(principal, "POST", "/rollback")
        and _passes(executing.check_reversible, live["rail"], reversible)
        and _passes(executing.check_rollback, live)
    ):
        found.append(schemas.Operation("rollback", "POST", path + "/rollback", execution_id=live["id"]))
    return found


def signer_operations(
    row: dict[str, Any], answers: list[dict[str, Any]], signer: str, approver: dict[str, Any] | None
) -> list[schemas.Operation]:
    """Approve and reject, per role `signer` (its `approvers` row: `approver`) may answer in."""
    roles = sorted(json.loads(approver["roles"])) if approver is not None else []
    if not _passes(answering.check_not_answered, answers, signer, row["id"]):
        return []
    found = []
    for role in roles:
        if _passes(check_approver, signer, approver, role) and _passes(answering.check_open, row, role):
            for name in ("approve", "reject"):
                found.append(schemas.Operation(name, "POST", f"/v1/actions/{row['id']}/{name}", role=role))
    return found


class OperationService:
    """Adds `operations` to the records callers read, and answers for a signer."""

    def __init__(self, db: Database, actions: ActionService, rails: RailService) -> None:
        self.db = db
        self.actions = actions
        self.rails = rails

    async def _reversible(
        self, principal: Principal, record: schemas.ActionRecord, known: dict[str, bool]
    ) -> bool:
        """Whether the rail of the action's succeeded execution can compensate it (`known`:
        the answers so far, by rail, for a page of records)."""
        live = live_execution(record)
        if live is None or live["status"] != executing.SUCCEEDED or not _may(principal, "POST", "/rollback"):
            return False
        rail = live["rail"]
        if rail not in known:
            try:
                known[rail] = (await self.rails.adapter(record.tenant_id, rail)).reversible
            except AppError:  # the rail is gone: the route would refuse too
                known[rail] = False
        return known[rail]

    async def record(
        self, principal: Principal, record: schemas.ActionRecord, known: dict[str, bool] | None = None
    ) -> schemas.ActionRecord:
        """`record` with what `principal` may do with it now."""
        reversible = await self._reversible(principal, record, {} if known is None else known)
        operations = caller_operations(principal, record, utc_now(), reversible)
        return msgspec.structs.replace(record, operations=operations)

    async def page(self, principal: Principal, page: schemas.ActionPage) -> schemas.ActionPage:
        known: dict[str, bool] = {}  # one tenant's rails, asked once per page
        records = [await self.record(principal, record, known) for record in page.actions]
        return schemas.ActionPage(records, page.next_cursor)

    async def for_signer(self, action_id: str, signer: str | None) -> schemas.ActionOperations:
        """What an unauthenticated caller may do: approve or reject as `signer`, where its
        signature would count. Raises NotFound (`action_not_found`), Unprocessable
        (`invalid_address`)."""
        address = checksum_address(signer, "signer") if signer is not None else None
        row = await answering.current_row(self.db, self.actions.ledger, action_id)
        operations: list[schemas.Operation] = []
        if address is not None:
            async with self.db.read() as conn:
                answers = await conn.fetch(lifecycle.ANSWERS_SQL, row["tenant_id"], action_id)
                approver = await conn.fetchrow(_APPROVER_SQL, row["tenant_id"], address)
            operations = signer_operations(row, answers, address, approver)
        return schemas.ActionOperations(action_id, row["status"], operations)
