"""Wallet approvals of escalated actions: EIP-712 signatures as the credential.

An approver answers an escalated action by signing its `Approval` typed data (GET
`/v1/actions/{id}/approval-request`) with their wallet and posting the signature. The server
never takes typed data from a client: it rebuilds the `Approval` from its own records (the
tenant's domain, the action's id, hash, window and summary, the role and the answer claimed),
then checks, in this order, each refusal with its own code and nothing written:

1. the action exists (404 `action_not_found`) and is pending (409 `action_not_pending` with its
   `action_status`, or `approval_window_expired`);
2. the role is one whose answers count for this action (422 `role_not_required`);
3. the signature is well formed: 65 bytes, v in {27, 28, 0, 1}, low s (422 `invalid_signature`);
   contract wallets may send longer signatures;
4. who signed: an EOA signature is recovered (ecrecover) and must be the `signer` claimed, if
   any; a contract wallet (`kind: contract`, `signer` required) must answer `isValidSignature`
   with 0x1626ba7e through the tenant's RPC (EIP-1271); an unreachable RPC refuses (503
   `signer_unavailable`, retryable), never accepts. A signature over anything else (another
   action, tenant, domain, role or answer) is 422 `signature_mismatch`; an address that is not an
   approver of this tenant (or was removed) is 403 `not_an_approver`;
5. the signer holds the role (403 `role_not_held`) (steps 3-5: `gateway.services.signatures`);
6. under the tenant's chain lock (`lifecycle.transition`): still pending and in its window, and
   this signer has not answered yet (409 `already_answered`).

Then the answer is counted (`policy.approvals`) against the requirements pinned at decision
time. When every requirement holds, the action is `allowed` and exactly one verdict is signed in
the same commit; a rejection by a signer in a counted role ends it as `rejected`.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import msgspec

from crypto.eip712 import (
    DECISION_ALLOW,
    ApprovalItem,
    ApprovalMessage,
    BulkApprovalMessage,
    Domain,
    VerdictMessage,
    approval_typed_data,
    bulk_approval_typed_data,
    hash_approval,
    hash_bulk_approval,
)
from crypto.errors import TypedDataError
from crypto.signing import sign_verdict
from gateway import schemas
from gateway.auth import Principal
from gateway.clock import parse_rfc3339, rfc3339, rfc3339_seconds, utc_now
from gateway.errors import AppError, Conflict, InvalidRequest, NotFound, Unprocessable
from gateway.ledger import EntryDraft, Ledger, Statement
from gateway.services import lifecycle
from gateway.services.actions import ActionService
from gateway.services.policies import PolicyService
from gateway.services.signatures import RPC_TIMEOUT_SECONDS, SignatureChecker, SignatureMismatch, Signed
from gateway.services.validation import ROLE
from gateway.storage import Conn, Database
from gateway.tracing import RequestContext
from policy import ApprovalRequirement
from policy.approvals import Answer, all_met, missing, required_roles

MAX_BULK_ITEMS = 100
MAX_COMMENT = 1000
_HASH = re.compile(r"0x[0-9a-f]{64}")
_REQUIREMENTS = msgspec.json.Decoder(list[ApprovalRequirement])
_encode = msgspec.json.Encoder()


class RoleNotRequired(Unprocessable):
    code = "role_not_required"


class AlreadyAnswered(Conflict):
    code = "already_answered"


def requirements_of(row: dict[str, Any]) -> list[ApprovalRequirement]:
    text = row["approvals_required"]
    return _REQUIREMENTS.decode(text) if text else []


def domain_of(row: dict[str, Any]) -> Domain:
    return Domain(int(row["chain_id"]), row["verifying_contract"])


def approval_message(row: dict[str, Any], role: str, approve: bool) -> ApprovalMessage:
    """The `Approval` of this action, role and answer, from the server's own records only."""
    return ApprovalMessage(
        action_id=row["id"],
        action_hash=bytes.fromhex(row["action_hash"][2:]),
        tenant=row["tenant_id"],
        role=role,
        approve=approve,
        expires_at=int(parse_rfc3339(row["approval_expires_at"]).timestamp()),
        summary=row["summary"] or "",
    )


async def current_row(
    db: Database, ledger: Ledger, action_id: str, tenant_id: str | None = None
) -> dict[str, Any]:
    """The action as it is now (expired first if its window passed), of `tenant_id` when the
    caller knows it (None: whichever tenant's it is). Raises NotFound."""

    async def fetch() -> dict[str, Any]:
        async with db.read() as conn:
            row = await lifecycle.fetch_action(conn, action_id, tenant_id)
        if row is None:
            raise NotFound(f"action {action_id!r} not found", code="action_not_found")
        return row

    return await lifecycle.current(ledger, await fetch(), fetch)


def check_open(row: dict[str, Any], role: str) -> list[ApprovalRequirement]:
    """Steps 1-2 of an answer: the action is pending and `role` counts for it. Returns the
    action's requirements. Raises Conflict (`action_not_pending`, `approval_window_expired`),
    Unprocessable (`invalid_role`, `role_not_required`). `gateway.services.operations` offers
    approve/reject only where this passes."""
    if row["status"] != lifecycle.PENDING:
        raise lifecycle.not_pending(row)
    if not ROLE.fullmatch(role):
        raise Unprocessable(
            f"role {role!r} must match {ROLE.pattern}", code="invalid_role", field="approver_role"
        )
    requirements = requirements_of(row)
    roles = required_roles(requirements)
    if role not in roles:
        raise RoleNotRequired(
            f"role {role!r} is not one this action needs; it needs {', '.join(sorted(roles))}",
            required_roles=sorted(roles),
        )
    return requirements


def check_not_answered(answers: list[dict[str, Any]], signer: str, action_id: str) -> None:
    """Raises AlreadyAnswered when `signer` answered the action already (it counts once)."""
    if any(answer["signer"] == signer for answer in answers):
        raise AlreadyAnswered(f"{signer} already answered action {action_id}; it counts once")


def check_pending(row: dict[str, Any]) -> None:
    """The action is pending approval (what cancelling and answering need). Raises Conflict
    (`action_not_pending`, `approval_window_expired`)."""
    if row["status"] != lifecycle.PENDING:
        raise lifecycle.not_pending(row)


def check_verdict_available(record: schemas.ActionRecord) -> schemas.SignedVerdict:
    """The action's signed verdict. Raises Conflict (`verdict_not_available`) when it has none."""
    if record.signed_verdict is None:
        raise Conflict(
            f"action {record.action_id} is {record.status}: it has no verdict", code="verdict_not_available",
            action_status=record.status,
        )  # fmt: skip
    return record.signed_verdict


class ApprovalService:
    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        policies: PolicyService,
        actions: ActionService,
        *,
        rpc_timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.policies = policies
        self.actions = actions  # its `signer` is the verdict key (reloaded on rotation)
        self.signatures = SignatureChecker(db, rpc_timeout=rpc_timeout)

    # ---- reading

    async def _row(self, action_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        return await current_row(self.db, self.ledger, action_id, tenant_id)

    async def approval_request(self, action_id: str, role: str, approve: bool) -> dict[str, Any]:
        """The exact `eth_signTypedData_v4` document to sign for this action, role and answer."""
        row = await self._row(action_id)
        check_open(row, role)
        return approval_typed_data(domain_of(row), approval_message(row, role, approve))

    # ---- answering one action

    async def answer(
        self,
        action_id: str,
        body: schemas.ApproveRequest | schemas.RejectRequest,
        approve: bool,
        context: RequestContext | None,
    ) -> schemas.ApprovalOutcome:
        """Approve (or reject) an escalated action with a wallet signature (see the module docstring)."""
        row = await self._row(action_id)
        role = body.approver_role
        requirements = check_open(row, role)
        message = approval_message(row, role, approve)
        domain = domain_of(row)
        digest = hash_approval(domain, message)

        def variants() -> list[tuple[str, bytes]]:  # what else this signature might have signed
            roles = sorted(required_roles(requirements))
            return [
                (
                    f"role {other_role!r}, approve={str(other).lower()}",
                    hash_approval(domain, approval_message(row, other_role, other)),
                )
                for other_role in roles
                for other in (True, False)
                if (other_role, other) != (role, approve)
            ]

        typed_data = approval_typed_data(domain, message)
        signed = await self.signatures.verify(
            row["tenant_id"], row["rpc_url"], body.signature, body.signer, digest, typed_data, role, variants
        )
        note = body.comment if isinstance(body, schemas.ApproveRequest) else body.reason
        return await self._commit(row, requirements, signed, role, approve, _check_comment(note), context)

    async def _commit(
        self,
        row: dict[str, Any],
        requirements: list[ApprovalRequirement],
        signed: Signed,
        role: str,
        approve: bool,
        comment: str | None,
        context: RequestContext | None,
    ) -> schemas.ApprovalOutcome:
        """Step 6 and the count: one transition under the chain lock."""
        version = row["policy_version"]
        if version is None:  # an escalation always has a policy; refuse rather than guess
            raise Conflict(f"action {row['id']} has no policy version", code="action_not_pending")
        ttl = (await self.policies.compiled(row["tenant_id"], int(version))).compiled.verdict_ttl_seconds
        result: dict[str, Any] = {}

        async def decide(conn: Conn, fresh: dict[str, Any], now: datetime) -> lifecycle.Finish:
            check_pending(fresh)
            answers = await conn.fetch(lifecycle.ANSWERS_SQL, fresh["tenant_id"], fresh["id"])
            check_not_answered(answers, signed.signer, fresh["id"])
            signed_at = rfc3339(now)
            mine = {"signer": signed.signer, "role": role, "approve": approve, "kind": signed.kind,
                    "comment": comment, "signed_at": signed_at}  # fmt: skip
            counted = [Answer(a["signer"], a["role"], bool(a["approve"])) for a in answers]
            counted.append(Answer(signed.signer, role, approve))
            entries = [
                EntryDraft(
                    "approval.granted" if approve else "approval.rejected",
                    f"approver:{signed.signer}",
                    {
                        "signer": signed.signer,
                        "kind": signed.kind,
                        "role": role,
                        "approve": approve,
                        "signature": signed.signature,
                        "digest": "0x" + signed.digest.hex(),
                        "typed_data": signed.typed_data,
                        "comment": comment,
                        "request": msgspec.to_builtins(context) if context is not None else None,
                    },
                    fresh["id"],
                )
            ]
            verdict = None
            if not approve:
                status, decision, reason = lifecycle.REJECTED, "DENY", "rejected"
            elif all_met(requirements, counted):
                status, decision, reason = lifecycle.ALLOWED, "ALLOW", "approved"
                verdict = self._sign_verdict(fresh, now, ttl)
                entries.append(
                    EntryDraft(
                        "verdict.issued",
                        "gateway",
                        {
                            "typed_data": verdict.typed_data,
                            "signature": verdict.signature,
                            "signer": verdict.signer,
                        },
                        fresh["id"],
                    )
                )
            else:
                status, decision, reason = lifecycle.PENDING, fresh["decision"], fresh["reason"]
            entries[0].data["outcome"] = status
            result.update(
                answers=[*answers, mine], counted=counted, verdict=verdict, status=status, decision=decision
            )

            def writes(seqs: list[int]) -> list[Statement]:
                return [
                    (
                        "INSERT INTO approvals (tenant_id, action_id, signer, role, approve, kind, signature, digest,"
                        " comment, signed_at, audit_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (fresh["tenant_id"], fresh["id"], signed.signer, role, int(approve), signed.kind,
                         signed.signature, "0x" + signed.digest.hex(), comment, signed_at, seqs[0]),
                    )
                ]  # fmt: skip

            return lifecycle.Finish(
                status,
                decision,
                reason,
                entries,
                signed_verdict=_encode.encode(verdict).decode() if verdict is not None else None,
                writes=writes,
            )

        await lifecycle.transition(self.ledger, row["tenant_id"], row["id"], decide)
        return schemas.ApprovalOutcome(
            action_id=row["id"],
            decision=result["decision"],
            status=result["status"],
            approvals=[lifecycle.approval_view(answer) for answer in result["answers"]],
            approvals_required=requirements,
            signed_verdict=result["verdict"],
            missing=[item for r in requirements for item in missing(r, result["counted"])]
            if result["status"] == lifecycle.PENDING
            else [],
        )

    def _sign_verdict(self, row: dict[str, Any], now: datetime, ttl: int) -> schemas.SignedVerdict:
        issued_at = int(now.timestamp())
        message = VerdictMessage(
            action_id=row["id"],
            action_hash=bytes.fromhex(row["action_hash"][2:]),
            tenant=row["tenant_id"],
            agent=row["agent_id"],
            action_type=row["type"],
            decision=DECISION_ALLOW,
            policy_version=int(row["policy_version"]),
            policy_hash=bytes.fromhex(row["policy_hash"][2:]),
            issued_at=issued_at,
            expires_at=issued_at + ttl,
        )
        result = sign_verdict(self.actions.signer, domain_of(row), message)
        return schemas.SignedVerdict(
            result.typed_data, result.signature, result.signer, rfc3339_seconds(issued_at + ttl)
        )

    # ---- bulk

    async def bulk_request(self, tenant_id: str, body: schemas.BulkRequestQuery) -> dict[str, Any]:
        """The `BulkApproval` typed data to sign for these actions (each must be open to the role)."""
        if not 1 <= len(body.action_ids) <= MAX_BULK_ITEMS or len(set(body.action_ids)) < len(
            body.action_ids
        ):
            raise InvalidRequest(f"give 1 to {MAX_BULK_ITEMS} distinct action ids", code="invalid_items")
        rows = []
        for action_id in body.action_ids:
            row = await self._row(action_id, tenant_id)
            if row["tenant_id"] != tenant_id:
                raise NotFound(f"action {action_id!r} not found", code="action_not_found")
            check_open(row, body.approver_role)
            rows.append(row)
        deadline = body.deadline
        if deadline is None:
            deadline = min(int(parse_rfc3339(row["approval_expires_at"]).timestamp()) for row in rows)
        message = self._bulk_message(
            tenant_id,
            body.approver_role,
            body.approve,
            deadline,
            [(row["id"], row["action_hash"]) for row in rows],
        )
        return bulk_approval_typed_data(domain_of(rows[0]), message)

    @staticmethod
    def _bulk_message(
        tenant_id: str, role: str, approve: bool, deadline: int, items: list[tuple[str, str]]
    ) -> BulkApprovalMessage:
        try:
            return BulkApprovalMessage(
                tenant=tenant_id,
                role=role,
                approve=approve,
                deadline=deadline,
                items=tuple(
                    ApprovalItem(action_id, bytes.fromhex(action_hash[2:]))
                    for action_id, action_hash in items
                ),
            )
        except TypedDataError as exc:
            raise Unprocessable(f"the bulk approval cannot be encoded: {exc}", code="invalid_items") from None

    async def bulk(
        self, tenant_id: str, body: schemas.BulkApprovalRequest, context: RequestContext | None
    ) -> schemas.BulkApprovalResult:
        """One signature over many actions; each item is checked and committed as if alone."""
        items = body.items
        if not 1 <= len(items) <= MAX_BULK_ITEMS or len({item.action_id for item in items}) < len(items):
            raise InvalidRequest(
                f"give 1 to {MAX_BULK_ITEMS} items with distinct action ids", code="invalid_items"
            )
        for item in items:
            if not _HASH.fullmatch(item.action_hash):
                raise Unprocessable(
                    "action_hash must be 0x and 64 lowercase hex digits", code="invalid_items"
                )
        if not ROLE.fullmatch(body.approver_role):
            raise Unprocessable("approver_role is not a role", code="invalid_role", field="approver_role")
        if body.deadline < int(utc_now().timestamp()):
            raise Conflict("the bulk approval's deadline has passed", code="approval_window_expired")
        async with self.db.read() as conn:
            tenant = await conn.fetchrow(
                "SELECT chain_id, verifying_contract, rpc_url FROM tenants WHERE id = ?", tenant_id
            )
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
        domain = domain_of(tenant)
        message = self._bulk_message(
            tenant_id,
            body.approver_role,
            body.approve,
            body.deadline,
            [(i.action_id, i.action_hash) for i in items],
        )
        digest = hash_bulk_approval(domain, message)
        typed_data = bulk_approval_typed_data(domain, message)
        signed = await self.signatures.verify(
            tenant_id,
            tenant["rpc_url"],
            body.signature,
            body.signer,
            digest,
            typed_data,
            body.approver_role,
            list,
        )
        comment = _check_comment(body.comment)
        results = await asyncio.gather(
            *(self._bulk_item(tenant_id, item, signed, body, comment, context) for item in items)
        )
        return schemas.BulkApprovalResult(list(results))

    async def _bulk_item(
        self,
        tenant_id: str,
        item: schemas.BulkItem,
        signed: Signed,
        body: schemas.BulkApprovalRequest,
        comment: str | None,
        context: RequestContext | None,
    ) -> schemas.BulkItemResult:
        try:
            row = await self._row(item.action_id, tenant_id)
            if row["tenant_id"] != tenant_id:
                raise NotFound(f"action {item.action_id!r} not found", code="action_not_found")
            if row["action_hash"] != item.action_hash:
                raise SignatureMismatch(
                    f"action {item.action_id} has another action hash than the one signed"
                )
            requirements = check_open(row, body.approver_role)
            outcome = await self._commit(
                row, requirements, signed, body.approver_role, body.approve, comment, context
            )
        except AppError as exc:
            return schemas.BulkItemResult(item.action_id, False, code=exc.code, detail=exc.detail)
        return schemas.BulkItemResult(
            item.action_id, True, outcome.status, outcome.decision, signed_verdict=outcome.signed_verdict
        )

    # ---- lifecycle

    async def cancel(self, principal: Principal, action_id: str) -> schemas.ActionRecord:
        """Cancel a pending action: its agent or a tenant admin. Raises NotFound, Conflict."""
        if principal.tenant_id is None:
            raise NotFound(f"action {action_id!r} not found", code="action_not_found")
        row = await self._row(action_id, principal.tenant_id)
        ActionService.check_can_read(principal, row)

        async def decide(conn: Conn, fresh: dict[str, Any], now: datetime) -> lifecycle.Finish:
            check_pending(fresh)
            entry = EntryDraft("action.cancelled", principal.actor, {"reason": "cancelled"}, fresh["id"])
            return lifecycle.Finish(lifecycle.CANCELLED, "DENY", "cancelled", [entry])

        await lifecycle.transition(
            self.ledger, row["tenant_id"], action_id, decide, credential=principal.credential
        )
        return await self.actions.get(principal, action_id)

    async def verdict(self, principal: Principal, action_id: str) -> schemas.SignedVerdict:
        return check_verdict_available(await self.actions.get(principal, action_id))


def _check_comment(text: str | None) -> str | None:
    if text is not None and len(text) > MAX_COMMENT:
        raise Unprocessable(
            f"comment and reason are at most {MAX_COMMENT} characters", code="invalid_comment"
        )
    return text
