"""API v1 routes. Controllers stay thin: call a service with the caller `gateway.authz`
admitted (by its table, before the handler runs), return the result."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import MediaType, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from audit.tlog_proof import format_tlog_proofs
from gateway import metrics, schemas, telemetry
from gateway.authz import is_public, principal_of
from gateway.bodies import ACCEPTS_YAML
from gateway.clock import utc_now
from gateway.console.controller import ConsoleController
from gateway.controllers.events import EventsController
from gateway.controllers.executions import ExecutionController
from gateway.controllers.log import LogController
from gateway.controllers.metrics import MetricsController
from gateway.controllers.proposals import ProposalController
from gateway.controllers.rails import RailController
from gateway.controllers.webhooks import WebhookController
from gateway.errors import InvalidRequest
from gateway.keyring import LOG, VERDICT
from gateway.problems import PROBLEM_RESPONSES
from gateway.services.actions import MAX_PAGE
from gateway.services.simulation import MAX_SIMULATED, simulate_draft
from gateway.services.validation import checksum_address
from gateway.tracing import context_of

MAX_ENTRIES_PAGE = 1000
# Log indexes and sizes fit a BIGINT (SQLite INTEGER): beyond it, 400 rather than a 500 from the
# database; within it, the services say what is out of range (`invalid_range`).
LogIndex = Annotated[int, QueryParameter(ge=-(2**63), le=2**63 - 1)]


HEALTH_RETRY_AFTER_SECONDS = 5


@get("/health", tags=["operations"])
async def health(state: State) -> Response[dict[str, Any]]:
    """200 `{"status": "ok", "database": …}` when this process can serve; 503 with `problems`
    (component, code, detail) when it cannot: the database unreachable, the disk full, …"""
    problems = await state.health.problems()
    if not problems:
        return Response({"status": "ok", "database": state.db.dialect})
    body = {
        "status": "unavailable",
        "database": state.db.dialect,
        "problems": [{"component": p.component, "code": p.code, "detail": p.detail} for p in problems],
    }
    return Response(body, status_code=503, headers={"Retry-After": str(HEALTH_RETRY_AFTER_SECONDS)})


@get("/v1/keys", tags=["keys"])
async def public_keys(state: State) -> schemas.Keys:
    """Every verdict signer, oldest first: the active one, and retired ones (with `not_after`) that
    verdicts issued before a rotation were signed by."""
    return schemas.Keys(
        [
            schemas.VerdictSignerInfo(r.public, r.status, r.not_before, r.not_after)
            for r in state.keyring.of_kind(VERDICT)
        ]
    )


@post("/v1/tenants", status_code=201, tags=["tenants"])
async def create_tenant(
    state: State, request: Request, data: JSONBody[schemas.CreateTenant]
) -> schemas.Tenant:
    return await state.tenants.create_tenant(principal_of(request), data)


@get("/v1/tenants/{tenant_id:str}/keys", tags=["keys"])
async def tenant_keys(state: State, tenant_id: FromPath[str]) -> schemas.TenantKeys:
    """The tenant log's verifier key (signed-note format) and the verdict signers."""
    await state.tenants.get_tenant(tenant_id)
    audit = state.audit
    history = [
        schemas.LogKeyInfo(audit.vkey(tenant_id, r.log_public_key()), r.status, r.not_before, r.not_after)
        for r in state.keyring.of_kind(LOG)
    ]
    log_key = schemas.TenantLogKey(audit.origin(tenant_id), audit.vkey(tenant_id), history)
    return schemas.TenantKeys(log_key, (await public_keys.fn(state)).verdict_signers)


@get("/v1/tenants/{tenant_id:str}", tags=["tenants"])
async def get_tenant(state: State, tenant_id: FromPath[str]) -> schemas.Tenant:
    return await state.tenants.get_tenant(tenant_id)


@post("/v1/tenants/{tenant_id:str}/api-keys", status_code=201, tags=["credentials"])
async def create_api_key(
    state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[schemas.CreateApiKey]
) -> schemas.CreatedCredential:
    """A tenant admin's or an auditor's key. The token is shown this once."""
    return await state.credentials.create_api_key(principal_of(request), tenant_id, data)


@get("/v1/tenants/{tenant_id:str}/api-keys", tags=["credentials"])
async def list_api_keys(state: State, tenant_id: FromPath[str]) -> list[schemas.ApiKey]:
    """Every key of the tenant, revoked ones too; never a token or its hash."""
    return await state.credentials.list_api_keys(tenant_id)


@delete("/v1/tenants/{tenant_id:str}/api-keys/{key_id:str}", status_code=204, tags=["credentials"])
async def revoke_api_key(
    state: State, request: Request, tenant_id: FromPath[str], key_id: FromPath[str]
) -> None:
    """Revoke a key at once; revoking a revoked key changes nothing."""
    await state.credentials.revoke(principal_of(request), tenant_id, key_id)


@post("/v1/tenants/{tenant_id:str}/agents", status_code=201, tags=["agents"])
async def create_agent(
    state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[schemas.CreateAgent]
) -> schemas.CreatedAgent:
    return await state.tenants.create_agent(principal_of(request), tenant_id, data)


@get("/v1/tenants/{tenant_id:str}/agents", tags=["agents"])
async def list_agents(state: State, tenant_id: FromPath[str]) -> list[schemas.Agent]:
    return await state.tenants.list_agents(tenant_id)


@post("/v1/tenants/{tenant_id:str}/agents/{agent_id:str}/token", status_code=201, tags=["agents"])
async def rotate_agent_token(
    state: State,
    request: Request,
    tenant_id: FromPath[str],
    agent_id: FromPath[str],
    data: JSONBody[schemas.RotateToken | None] = None,
) -> schemas.RotatedToken:
    """A new token for the agent (shown once); every token it had is revoked in the same commit."""
    body = data if data is not None else schemas.RotateToken()
    return await state.credentials.rotate_agent_token(principal_of(request), tenant_id, agent_id, body)


@get("/v1/tenants/{tenant_id:str}/agents/{agent_id:str}/scope", tags=["agents"])
async def get_agent_scope(
    state: State, tenant_id: FromPath[str], agent_id: FromPath[str]
) -> schemas.AgentScopeView:
    return await state.scopes.get(tenant_id, agent_id)


@put("/v1/tenants/{tenant_id:str}/agents/{agent_id:str}/scope", tags=["agents"])
async def set_agent_scope(
    state: State,
    request: Request,
    tenant_id: FromPath[str],
    agent_id: FromPath[str],
    data: JSONBody[schemas.SetAgentScope | None] = None,
) -> schemas.AgentScopeView:
    """What the agent may propose at all, checked before any rule (DENY `scope_violation:<which>`);
    null clears it. Applies to every proposal committed after this answer."""
    return await state.scopes.set(principal_of(request), tenant_id, agent_id, data)


@post("/v1/tenants/{tenant_id:str}/approvers", status_code=201, tags=["approvers"])
async def create_approver(
    state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[schemas.CreateApprover]
) -> schemas.Approver:
    return await state.tenants.create_approver(principal_of(request), tenant_id, data)


@get("/v1/tenants/{tenant_id:str}/approvers", tags=["approvers"])
async def list_approvers(
    state: State, tenant_id: FromPath[str], removed: FromQuery[bool] = False
) -> list[schemas.Approver]:
    """Active approvers; with `removed=true`, removed ones too (their past approvals stand)."""
    return await state.tenants.list_approvers(tenant_id, removed=removed)


@get("/v1/tenants/{tenant_id:str}/approvers/{address:str}", tags=["approvers"])
async def get_approver(state: State, tenant_id: FromPath[str], address: FromPath[str]) -> schemas.Approver:
    return await state.tenants.get_approver(tenant_id, checksum_address(address, "address"))


@patch("/v1/tenants/{tenant_id:str}/approvers/{address:str}", tags=["approvers"])
async def update_approver(
    state: State,
    request: Request,
    tenant_id: FromPath[str],
    address: FromPath[str],
    data: JSONBody[schemas.UpdateApprover],
) -> schemas.Approver:
    """Change roles or name; approvals already given stand."""
    return await state.tenants.update_approver(principal_of(request), tenant_id, address, data)


@delete("/v1/tenants/{tenant_id:str}/approvers/{address:str}", status_code=200, tags=["approvers"])
async def remove_approver(
    state: State, request: Request, tenant_id: FromPath[str], address: FromPath[str]
) -> schemas.Approver:
    """No new approvals from this address; those it already gave stand."""
    return await state.tenants.remove_approver(principal_of(request), tenant_id, address)


@patch("/v1/tenants/{tenant_id:str}", tags=["tenants"])
async def update_tenant(
    state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[schemas.UpdateTenant]
) -> schemas.Tenant:
    """Set the chain RPC URL that contract-wallet (EIP-1271) approvals are checked through."""
    return await state.tenants.update_tenant(principal_of(request), tenant_id, data)


@post(
    "/v1/tenants/{tenant_id:str}/policies",
    status_code=201,
    tags=["policies"],
    description="Body: the policy document as application/json or application/yaml.",
    opt={ACCEPTS_YAML: True},
)
async def publish_policy(
    state: State, request: Request, tenant_id: FromPath[str], activate: FromQuery[bool] = True
) -> schemas.PolicyVersion:
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    return await state.policies.publish(
        principal_of(request), tenant_id, body, content_type, activate=activate
    )


@post(
    "/v1/tenants/{tenant_id:str}/policies/simulate",
    status_code=200,
    tags=["policies"],
    description=(
        "Body: a draft policy document as application/json or application/yaml. Replays the tenant's"
        " last `last` actions (1-1000, default 100; within `from`/`to` when given) through the draft and"
        " reports every decision that would change. Writes nothing."
    ),
    opt={ACCEPTS_YAML: True},
)
async def simulate_policy(
    state: State,
    request: Request,
    tenant_id: FromPath[str],
    last: Annotated[int, QueryParameter(ge=1, le=MAX_SIMULATED)] = 100,
    created_from: Annotated[str | None, QueryParameter(name="from")] = None,
    created_to: Annotated[str | None, QueryParameter(name="to")] = None,
) -> schemas.SimulationResult:
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    return await simulate_draft(
        state.db, tenant_id, body, content_type, last=last, created_from=created_from, created_to=created_to
    )


@get("/v1/tenants/{tenant_id:str}/policies", tags=["policies"])
async def list_policies(state: State, tenant_id: FromPath[str]) -> list[schemas.PolicyVersion]:
    return await state.policies.list_versions(tenant_id)


@get("/v1/tenants/{tenant_id:str}/policies/{version:int}", tags=["policies"])
async def get_policy(state: State, tenant_id: FromPath[str], version: FromPath[int]) -> schemas.PolicyDetail:
    return await state.policies.get_version(tenant_id, version)


@post("/v1/tenants/{tenant_id:str}/policies/{version:int}/activate", status_code=200, tags=["policies"])
async def activate_policy(
    state: State, request: Request, tenant_id: FromPath[str], version: FromPath[int]
) -> schemas.PolicyVersion:
    return await state.policies.activate(principal_of(request), tenant_id, version)


@get("/v1/tenants/{tenant_id:str}/audit/entries", tags=["audit"])
async def audit_entries(
    state: State,
    tenant_id: FromPath[str],
    start: LogIndex = 0,
    end: Annotated[int | None, QueryParameter(ge=-(2**63), le=2**63 - 1)] = None,
) -> schemas.AuditEntries:
    """The exact stored entry bytes (base64) of `[start, end)`, at most 1000 at a time
    (`end` defaults to the log size or start + 1000)."""
    state.audit.require_intact(tenant_id)
    async with state.db.read() as conn:
        head = await conn.fetchrow("SELECT size FROM audit_heads WHERE tenant_id = ?", tenant_id)
        size = int(head["size"]) if head else 0
        end = min(size, start + MAX_ENTRIES_PAGE) if end is None else end
        if not 0 <= start <= end <= size or end - start > MAX_ENTRIES_PAGE:
            raise InvalidRequest(
                f"need 0 <= start <= end <= {size} and at most {MAX_ENTRIES_PAGE} entries",
                code="invalid_range",
            )
        rows = await conn.fetch(
            "SELECT seq, entry FROM audit_entries WHERE tenant_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
            tenant_id,
            start,
            end,
        )
    views = [
        schemas.AuditEntryView(int(r["seq"]), base64.b64encode(bytes(r["entry"])).decode()) for r in rows
    ]
    return schemas.AuditEntries(views, size)


def _text(note: str) -> Response[str]:
    # Litestar adds "; charset=utf-8" to a text/* media type itself: naming it here doubled it
    return Response(note, media_type=MediaType.TEXT)


@get(
    "/v1/tenants/{tenant_id:str}/audit/checkpoint",
    tags=["audit"],
    media_type=MediaType.TEXT,
)
async def audit_checkpoint(
    state: State,
    tenant_id: FromPath[str],
    size: Annotated[int | None, QueryParameter(ge=-(2**63), le=2**63 - 1)] = None,
) -> Response[str]:
    """The latest signed checkpoint (C2SP tlog-checkpoint as a signed note), or the one of `size`."""
    if size is not None:
        return _text((await state.audit.at_size(tenant_id, size)).note)
    return _text(await state.audit.published_note(tenant_id))


@post(
    "/v1/tenants/{tenant_id:str}/audit/checkpoint",
    tags=["audit"],
    status_code=200,
    media_type=MediaType.TEXT,
)
async def new_audit_checkpoint(state: State, tenant_id: FromPath[str]) -> Response[str]:
    """Checkpoint now: integrate every entry appended so far and return the checkpoint covering them."""
    return _text((await state.audit.checkpoint(tenant_id)).note)


@get("/v1/tenants/{tenant_id:str}/audit/proof/inclusion", tags=["audit"])
async def inclusion_proof(
    state: State,
    tenant_id: FromPath[str],
    index: LogIndex,
    size: LogIndex,
) -> schemas.Proof:
    """RFC 9162 inclusion proof of entry `index` in the tree of the first `size` entries."""
    return _proof(await state.audit.inclusion_proof(tenant_id, index, size))


@get("/v1/tenants/{tenant_id:str}/audit/proof/consistency", tags=["audit"])
async def consistency_proof(
    state: State,
    tenant_id: FromPath[str],
    old_size: Annotated[int, QueryParameter(name="from", ge=-(2**63), le=2**63 - 1)],
    new_size: Annotated[int, QueryParameter(name="to", ge=-(2**63), le=2**63 - 1)],
) -> schemas.Proof:
    """RFC 9162 consistency proof that the tree of `to` entries extends the tree of `from` entries."""
    return _proof(await state.audit.consistency_proof(tenant_id, old_size, new_size))


def _proof(hashes: list[bytes]) -> schemas.Proof:
    return schemas.Proof([base64.b64encode(h).decode() for h in hashes])


@dataclass
class _ProofOperation(Operation):
    """The proof route's OpenAPI entry: its 200 answer is JSON, or text for `format=tlog-proof`."""

    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            text = Schema(type=OpenAPIType.STRING, description="c2sp.org/tlog-proof, one per entry")
            ok.content["text/plain"] = OpenAPIMediaType(schema=text)


@get("/v1/actions/{action_id:str}/proof", tags=["actions", "audit"], operation_class=_ProofOperation)
async def action_proof(
    state: State,
    request: Request,
    action_id: FromPath[str],
    proof_format: Annotated[Literal["verdict-proof", "tlog-proof"], QueryParameter(name="format")] = (
        "verdict-proof"
    ),
) -> Response[Any]:
    """Proof bundle of every audit entry of this action, verifiable offline
    (`verdict audit verify BUNDLE --vkey VKEY`): `verdict-proof/v1` JSON, or with
    `format=tlog-proof` one c2sp.org/tlog-proof per entry (text)."""
    bundle = await state.audit.action_bundle(principal_of(request), action_id)
    if proof_format == "tlog-proof":
        return Response(format_tlog_proofs(bundle), media_type=MediaType.TEXT)
    return Response(msgspec.convert(bundle, schemas.ProofBundle))


@post(
    "/v1/agents/{agent_id:str}/propose",
    status_code=201,
    tags=["actions"],
    description=(
        "With an `Idempotency-Key` header (1-255 visible ASCII characters, kept 24 h per agent),"
        " repeating the same request returns the original answer (marked `Idempotent-Replayed: true`)"
        " and creates nothing; another request with the same key answers 409 `idempotency_conflict`."
        " Each agent may make a limited number of proposals per minute (429 `rate_limited`)."
        " An action breaking its type's parameters schema is refused with 422 `invalid_parameters`"
        " listing every violation; `explain=false` leaves out the explain trace (`checks`)."
        " With `callback_url`, this action's events are posted there as Standard Webhooks signed"
        " with the tenant's webhook secret (docs/webhooks.md)."
    ),
)
async def propose(
    state: State,
    request: Request,
    agent_id: FromPath[str],
    data: JSONBody[schemas.ProposeRequest],
    explain: FromQuery[bool] = True,
) -> Response[schemas.ProposeResponse]:
    if data.callback_url is not None:  # refused before anything is decided or written
        await state.webhooks.check_target(data.callback_url, "callback_url")
    proposed = await state.actions.propose(
        principal_of(request),
        agent_id,
        data,
        utc_now(),
        request.headers.get("idempotency-key"),
        explain=explain,
    )
    if data.callback_url is not None:  # (again on a replay: a crash in between loses no callback)
        answer = proposed.response
        await state.webhooks.register_callback(
            principal_of(request), answer.action_id, data.callback_url, answer.audit_event_id
        )
    answer = proposed.response
    telemetry.annotate(action_id=answer.action_id, decision=answer.decision)
    if proposed.replayed:
        metrics.IDEMPOTENT_REPLAYS.inc()
    else:
        metrics.count_decision(
            principal_of(request).tenant_id or "", answer.decision,
            per_tenant=state.settings.metrics_tenant_labels,
        )  # fmt: skip
    headers = {"Idempotent-Replayed": "true"} if proposed.replayed else None
    return Response(answer, status_code=201, headers=headers)


@get("/v1/tenants/{tenant_id:str}/rate-limits", tags=["rate limits"])
async def get_rate_limits(state: State, tenant_id: FromPath[str]) -> schemas.RateLimits:
    return await state.rate_limits.get(tenant_id)


@put("/v1/tenants/{tenant_id:str}/rate-limits", tags=["rate limits"])
async def set_tenant_rate_limit(
    state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[schemas.SetRateLimit]
) -> schemas.RateLimits:
    """The proposals per minute each agent of the tenant may make, unless it has its own limit."""
    return await state.rate_limits.set(principal_of(request), tenant_id, None, data)


@put("/v1/tenants/{tenant_id:str}/agents/{agent_id:str}/rate-limits", tags=["rate limits"])
async def set_agent_rate_limit(
    state: State,
    request: Request,
    tenant_id: FromPath[str],
    agent_id: FromPath[str],
    data: JSONBody[schemas.SetRateLimit],
) -> schemas.RateLimits:
    """The proposals per minute this agent may make (null: the tenant's limit)."""
    return await state.rate_limits.set(principal_of(request), tenant_id, agent_id, data)


@get("/v1/actions/{action_id:str}", tags=["actions"])
async def get_action(state: State, request: Request, action_id: FromPath[str]) -> schemas.ActionRecord:
    """The action's record, with the `operations` the caller may perform on it now."""
    principal = principal_of(request)
    return await state.operations.record(principal, await state.actions.get(principal, action_id))


@get("/v1/actions/{action_id:str}/operations", tags=["actions", "approvals"])
async def action_operations(
    state: State, action_id: FromPath[str], signer: FromQuery[str | None] = None
) -> schemas.ActionOperations:
    """What a caller without a token may do with the action now: `approve` / `reject` per role
    `signer` holds and the action still needs (none without `signer`). Authenticated callers read
    the `operations` of the action's record."""
    return await state.operations.for_signer(action_id, signer)


@get("/v1/actions", tags=["actions"])
async def list_actions(
    state: State,
    request: Request,
    tenant_id: FromQuery[str | None] = None,
    agent_id: FromQuery[str | None] = None,
    decision: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    action_type: Annotated[str | None, QueryParameter(name="type")] = None,
    role: FromQuery[str | None] = None,
    created_from: Annotated[str | None, QueryParameter(name="from")] = None,
    created_to: Annotated[str | None, QueryParameter(name="to")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
    cursor: FromQuery[str | None] = None,
) -> schemas.ActionPage:
    principal = principal_of(request)
    page = await state.actions.list(
        principal,
        tenant_id=tenant_id,
        agent_id=agent_id,
        decision=decision,
        status=status,
        action_type=action_type,
        role=role,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        cursor=cursor,
    )
    return await state.operations.page(principal, page)


@get("/v1/actions/{action_id:str}/approval-request", tags=["approvals"])
async def approval_request(
    state: State, action_id: FromPath[str], role: FromQuery[str], approve: FromQuery[bool] = True
) -> dict[str, Any]:
    """The exact `eth_signTypedData_v4` JSON an approver signs to approve (or, with
    `approve=false`, reject) this action in `role`. No token needed."""
    return await state.approvals.approval_request(action_id, role, approve)


@post("/v1/actions/{action_id:str}/approve", status_code=200, tags=["approvals"])
async def approve_action(
    state: State, request: Request, action_id: FromPath[str], data: JSONBody[schemas.ApproveRequest]
) -> schemas.ApprovalOutcome:
    """Approve with a wallet signature over the approval request: the signature is the credential.
    When every requirement holds, the action is allowed and its one verdict is in the answer."""
    with telemetry.span("approve", action_id=action_id):
        outcome = await state.approvals.answer(action_id, data, True, context_of(request))
    metrics.APPROVALS.labels("approve", outcome.status).inc()
    return outcome


@post("/v1/actions/{action_id:str}/reject", status_code=200, tags=["approvals"])
async def reject_action(
    state: State, request: Request, action_id: FromPath[str], data: JSONBody[schemas.RejectRequest]
) -> schemas.ApprovalOutcome:
    """Reject with a wallet signature over the approval request with `approve=false`: the action
    ends as rejected (DENY)."""
    with telemetry.span("reject", action_id=action_id):
        outcome = await state.approvals.answer(action_id, data, False, context_of(request))
    metrics.APPROVALS.labels("reject", outcome.status).inc()
    return outcome


@post("/v1/tenants/{tenant_id:str}/approvals/bulk-request", status_code=200, tags=["approvals"])
async def bulk_approval_request(
    state: State, tenant_id: FromPath[str], data: JSONBody[schemas.BulkRequestQuery]
) -> dict[str, Any]:
    """The `BulkApproval` typed data to sign for several pending actions at once."""
    return await state.approvals.bulk_request(tenant_id, data)


@post("/v1/tenants/{tenant_id:str}/approvals/bulk", status_code=200, tags=["approvals"])
async def bulk_approve(
    state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[schemas.BulkApprovalRequest]
) -> schemas.BulkApprovalResult:
    """One signature over `BulkApproval(tenant, role, approve, deadline, items)`; each item is
    checked as if answered alone, and the answer reports each item's result."""
    with telemetry.span("approve" if data.approve else "reject", tenant=tenant_id, items=len(data.items)):
        result = await state.approvals.bulk(tenant_id, data, context_of(request))
    answer = "approve" if data.approve else "reject"
    for item in result.results:
        if item.ok and item.status is not None:
            metrics.APPROVALS.labels(answer, item.status).inc()
    return result


@delete("/v1/actions/{action_id:str}", status_code=200, tags=["actions"])
async def cancel_action(state: State, request: Request, action_id: FromPath[str]) -> schemas.ActionRecord:
    """Cancel a pending action (its agent or a tenant admin); 409 `action_not_pending` otherwise."""
    principal = principal_of(request)
    return await state.operations.record(principal, await state.approvals.cancel(principal, action_id))


@get("/v1/actions/{action_id:str}/verdict", tags=["actions"])
async def action_verdict(state: State, request: Request, action_id: FromPath[str]) -> schemas.SignedVerdict:
    """The signed verdict of an allowed action; 409 `verdict_not_available` otherwise."""
    return await state.approvals.verdict(principal_of(request), action_id)


def _document(handlers: list) -> list:
    """OpenAPI: bearer auth on every route the access table does not make public;
    problem+json errors on all."""
    for item in handlers:
        # a Controller: document each of its handlers, under the controller's path
        inner = (
            [v for v in vars(item).values() if isinstance(v, HTTPRouteHandler)]
            if isinstance(item, type)
            else [item]
        )
        for handler in inner:
            handler.responses = {**PROBLEM_RESPONSES, **(handler.responses or {})}
            if not is_public(handler, vars(item).get("path", "") if isinstance(item, type) else ""):
                handler.security = [{"bearer": []}]
    return handlers


ROUTES = _document(
    [
        health,
        public_keys,
        create_tenant,
        get_tenant,
        create_api_key,
        list_api_keys,
        revoke_api_key,
        create_agent,
        list_agents,
        rotate_agent_token,
        get_agent_scope,
        set_agent_scope,
        create_approver,
        list_approvers,
        publish_policy,
        simulate_policy,
        list_policies,
        get_policy,
        activate_policy,
        audit_entries,
        audit_checkpoint,
        new_audit_checkpoint,
        inclusion_proof,
        consistency_proof,
        action_proof,
        tenant_keys,
        propose,
        ProposalController,
        get_rate_limits,
        set_tenant_rate_limit,
        set_agent_rate_limit,
        get_action,
        action_operations,
        list_actions,
        update_tenant,
        get_approver,
        update_approver,
        remove_approver,
        approval_request,
        approve_action,
        reject_action,
        bulk_approval_request,
        bulk_approve,
        cancel_action,
        action_verdict,
        ExecutionController,
        MetricsController,
        RailController,
        EventsController,
        WebhookController,
        LogController,
    ]
)
ROUTES.append(ConsoleController)  # the approver console's pages (gateway/console/)
