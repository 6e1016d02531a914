"""What the console's pages show, gathered from the services the API uses (no SQL of its own).

The queue reads through `ActionService.list` and the action page through `ActionService.get`,
with the session's read-only principal, so the console shows exactly what the API would show
an auditor of the session's tenant, and nothing of another tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from gateway import schemas
from gateway.clock import parse_rfc3339, utc_now
from gateway.console.sessions import ConsoleSession
from gateway.services.actions import MAX_PAGE, ActionService
from policy import ApprovalRequirement
from policy.approvals import Answer, missing, required_roles

PENDING = "pending_approval"
AWAITING_PAGES = 10  # at most 1000 pending actions per role are looked through for "awaiting me"


def time_left(expires_at: str | None, now: datetime) -> str:
    """`2 h 05 min left`, `4 min left`, `expired`; empty when there is no window."""
    if not expires_at:
        return ""
    seconds = int((parse_rfc3339(expires_at) - now).total_seconds())
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod((seconds + 59) // 60, 60)
    return f"{hours} h {minutes:02d} min left" if hours else f"{minutes} min left"


def still_required(record: schemas.ActionRecord) -> list[str]:
    requirements = record.approvals_required or []
    answers = [Answer(a.address, a.role, a.approve) for a in record.approvals]
    lacking: list[str] = []
    for requirement in requirements:
        lacking.extend(
            missing(msgspec.convert(msgspec.to_builtins(requirement), ApprovalRequirement), answers)
        )
    return lacking


def answerable_roles(record: schemas.ActionRecord, session: ConsoleSession) -> list[str]:
    """The roles the signed-in approver holds that count for this action, if they may still
    answer it (pending, and not answered by them yet)."""
    if record.status != PENDING or session.address is None:
        return []
    if any(a.address == session.address for a in record.approvals):
        return []
    requirements = [
        msgspec.convert(msgspec.to_builtins(r), ApprovalRequirement) for r in record.approvals_required or []
    ]
    return sorted(required_roles(requirements) & set(session.roles))


def describe_context(context: dict[str, Any] | None) -> list[str]:
    """The history context in words: `vendor known, 14 prior payments`, `agent spent 12000.00 in 24h`."""
    lines = []
    for key, value in sorted((context or {}).items()):
        if key == "vendor.first_seen":
            lines.append("new vendor: no earlier payment" if value else "vendor known")
        elif key == "vendor.prior_count":
            lines.append(f"{value} prior payments to this vendor")
        elif key.startswith("agent.spend."):
            lines.append(f"agent spent {value} in the last {key.removeprefix('agent.spend.')}")
        elif key.startswith("agent.count."):
            lines.append(f"agent made {value} actions in the last {key.removeprefix('agent.count.')}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def row_of(record: schemas.ActionRecord, session: ConsoleSession, now: datetime) -> dict[str, Any]:
    action = record.action
    return {
        "record": record,
        "amount": action.get("amount"),
        "asset": action.get("asset") or action.get("currency"),
        "vendor": action.get("vendor"),
        "time_left": time_left(record.approval_expires_at, now) if record.status == PENDING else "",
        "roles": answerable_roles(record, session),
        "required": still_required(record) if record.status == PENDING else [],
        "context": describe_context(record.context),
    }


async def awaiting(actions: ActionService, session: ConsoleSession) -> list[schemas.ActionRecord]:
    """Pending actions needing a role the approver holds that they have not answered, oldest
    expiry first."""
    found: dict[str, schemas.ActionRecord] = {}
    for role in session.roles:
        cursor = None
        for _ in range(AWAITING_PAGES):
            page = await actions.list(
                session.reader(),
                tenant_id=session.tenant_id,
                agent_id=None,
                decision=None,
                status=PENDING,
                action_type=None,
                role=role,
                created_from=None,
                created_to=None,
                limit=MAX_PAGE,
                cursor=cursor,
            )
            for record in page.actions:
                if answerable_roles(record, session):
                    found[record.action_id] = record
            cursor = page.next_cursor
            if cursor is None:
                break
    return sorted(found.values(), key=lambda r: (r.approval_expires_at or "", r.action_id))


async def queue(
    actions: ActionService,
    session: ConsoleSession,
    view: str,
    filters: dict[str, str | None],
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of a queue view (`awaiting`, `pending`, `decided`) and the next page's cursor.
    Raises InvalidRequest for a bad filter (the API's codes)."""
    now = utc_now()
    if view == "awaiting":
        records = await awaiting(actions, session) if session.address else []
        return [row_of(r, session, now) for r in records], None
    status = PENDING if view == "pending" else filters.get("status")
    page = await actions.list(
        session.reader(),
        tenant_id=session.tenant_id,
        agent_id=filters.get("agent"),
        decision=None,
        status=status,
        action_type=filters.get("type"),
        role=None,
        created_from=filters.get("from"),
        created_to=filters.get("to"),
        limit=50,
        cursor=cursor,
    )
    records = page.actions
    if view == "decided" and status is None:
        records = [r for r in records if r.status != PENDING]
    if view == "pending":
        records = sorted(records, key=lambda r: (r.approval_expires_at or "", r.action_id))
    return [row_of(r, session, now) for r in records], page.next_cursor


async def awaiting_count(actions: ActionService, session: ConsoleSession) -> int:
    return len(await awaiting(actions, session)) if session.address else 0
