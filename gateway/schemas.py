"""Wire types of API v1 (msgspec Structs: unknown request fields are refused)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

import policy
from gateway.execution_schemas import ExecutionView


class Request(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of request bodies."""


class CreateTenant(Request):
    id: str
    name: str
    chain_id: int = 1
    verifying_contract: str = "0x0000000000000000000000000000000000000000"
    # JSON-RPC endpoint of `chain_id`, for EIP-1271 contract-wallet approvers (http or https).
    rpc_url: str | None = None
    # IANA time zone of the tenant's business hours (policies' `business_hours`); null: UTC.
    timezone: str | None = None


class UpdateTenant(Request):
    """Set (or, with null, clear) the chain RPC URL used to check contract-wallet approvals
    and the time zone policies read (`business_hours`, `is_weekend`); an absent field stays."""

    rpc_url: str | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType | None = msgspec.UNSET


class Tenant(msgspec.Struct, frozen=True):
    id: str
    name: str
    chain_id: int
    verifying_contract: str
    active_policy_version: int | None
    created_at: str
    # scheme://host[:port] of the RPC URL only: its path and query may hold an API key
    rpc_endpoint: str | None = None
    timezone: str | None = None


class CreateApiKey(Request):
    """An agent's token comes with the agent (and its rotation), not from here. A token may
    expire: at `expires_at` (RFC 3339) or after `ttl_seconds`, at most one of them."""

    role: Literal["tenant_admin", "auditor"]
    expires_at: str | None = None
    ttl_seconds: int | None = None


class CreatedCredential(msgspec.Struct, frozen=True):
    """`token` is shown this once; only its hash is stored."""

    id: str
    token: str
    role: str
    tenant_id: str
    expires_at: str | None = None


class ApiKey(msgspec.Struct, frozen=True):
    """A key as listed: never its token, nor the token's hash."""

    id: str
    role: str
    agent_id: str | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class RotateToken(Request):
    expires_at: str | None = None
    ttl_seconds: int | None = None


class RotatedToken(msgspec.Struct, frozen=True):
    """The agent's new token (shown once) and the keys the rotation revoked."""

    id: str
    token: str
    agent_id: str
    tenant_id: str
    expires_at: str | None
    revoked_key_ids: list[str]


class CreateAgent(Request):
    id: str | None = None
    name: str | None = None
    expires_at: str | None = None
    ttl_seconds: int | None = None


class Agent(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    name: str
    created_at: str


class CreatedAgent(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    name: str
    token: str
    key_id: str | None = None
    expires_at: str | None = None


class CreateApprover(Request):
    """`kind: contract` is an EIP-1271 wallet (e.g. a Safe): its approvals are checked by calling
    `isValidSignature` through the tenant's `rpc_url`."""

    address: str
    roles: list[str]
    name: str | None = None
    kind: Literal["eoa", "contract"] = "eoa"


class UpdateApprover(Request):
    roles: list[str] | None = None
    name: str | None = None


class SetAgentScope(Request):
    """What an agent may propose at all (docs/policy.md, Agent scopes); an absent field does not
    restrict. Send null instead of an object to clear the scope."""

    action_types: list[str] | None = None
    assets: list[str] | None = None
    max_amount: str | None = None  # a non-negative decimal string such as "10000"


class AgentScopeView(msgspec.Struct, frozen=True):
    tenant_id: str
    agent_id: str
    scope: dict[str, Any] | None  # null: the agent is not restricted beyond the policy


class Approver(msgspec.Struct, frozen=True):
    tenant_id: str
    address: str
    roles: list[str]
    name: str
    created_at: str
    kind: str = "eoa"
    removed_at: str | None = None


class PolicyVersion(msgspec.Struct, frozen=True):
    version: int
    hash: str
    active: bool
    created_at: str
    created_by: str


class PolicyDetail(msgspec.Struct, frozen=True):
    version: int
    hash: str
    active: bool
    created_at: str
    created_by: str
    document: dict[str, Any]


class SimulationResult(msgspec.Struct, frozen=True):
    """How many recorded actions a draft policy was replayed on, and each whose decision, reason
    or approvals would change (`after` is the draft's whole decision, with its trace)."""

    replayed: int
    changes: list[policy.DecisionChange]


class ProposeRequest(Request):
    action: dict[str, Any]
    tenant_id: str | None = None
    rationale: str | None = None
    metadata: dict[str, Any] | None = None
    # A webhook for this action's events only, signed with the tenant's default webhook secret
    # (docs/webhooks.md); https, public addresses only.
    callback_url: str | None = None
    # Ask for a human review even where the policy would allow (docs/api.md#require_approval):
    # ALLOW becomes ESCALATE with reason `approval_requested_by_agent`; DENY stays DENY.
    require_approval: bool = False


# What one matched ESCALATE rule asks for: {rule, threshold, roles} or {rule, all_of}.
ApprovalRequirement = policy.ApprovalRequirement
RoleQuota = policy.RoleQuota


class SignedVerdict(msgspec.Struct, frozen=True):
    typed_data: dict[str, Any]
    signature: str
    signer: str
    expires_at: str


class ProposeResponse(msgspec.Struct, frozen=True):
    action_id: str
    decision: Literal["ALLOW", "ESCALATE", "DENY"]
    status: str
    reason: str
    matched_rules: list[str]
    policy_version: int | None
    policy_hash: str | None
    approvals_required: list[ApprovalRequirement] | None
    signed_verdict: SignedVerdict | None
    audit_event_id: int
    action_hash: str
    # Set when the policy uses the feature (docs/policy.md): the risk assessment, the resource's
    # classification, every applicable limit with its window total and headroom, the history
    # values read, and the explain trace (null with `?explain=false`).
    risk: policy.RiskAssessment | None = None
    classification: policy.Classification | None = None
    limits: list[policy.LimitStatus] | None = None
    context: dict[str, Any] | None = None
    checks: list[policy.Check] | None = None


class ApprovalView(msgspec.Struct, frozen=True):
    """One approver's answer to an escalated action."""

    address: str
    role: str
    approve: bool
    signed_at: str
    kind: str = "eoa"
    comment: str | None = None


class ApproveRequest(Request):
    """The signature over this action's `Approval` (GET .../approval-request) is the credential.
    `signer` is required for a contract wallet (EIP-1271), optional for an EOA."""

    approver_role: str
    signature: str
    signer: str | None = None
    comment: str | None = None


class RejectRequest(Request):
    approver_role: str
    signature: str
    signer: str | None = None
    reason: str | None = None


class ApprovalOutcome(msgspec.Struct, frozen=True):
    action_id: str
    decision: str
    status: str
    approvals: list[ApprovalView]
    approvals_required: list[ApprovalRequirement] | None
    signed_verdict: SignedVerdict | None
    missing: list[str] = []  # what the requirements still lack, e.g. "1 more of cfo, controller"


class BulkItem(Request):
    action_id: str
    action_hash: str


class BulkApprovalRequest(Request):
    """One signature over `BulkApproval(tenant, role, approve, deadline, items)`."""

    approver_role: str
    approve: bool
    deadline: int  # Unix seconds after which the signature is no longer accepted
    items: list[BulkItem]
    signature: str
    signer: str | None = None
    comment: str | None = None


class BulkRequestQuery(Request):
    """What to put in a `BulkApproval` to sign: the server fills in each action's hash."""

    approver_role: str
    approve: bool
    action_ids: list[str]
    deadline: int | None = None  # default: the earliest approval window among the actions


class BulkItemResult(msgspec.Struct, frozen=True):
    action_id: str
    ok: bool
    status: str | None = None
    decision: str | None = None
    code: str | None = None
    detail: str | None = None
    signed_verdict: SignedVerdict | None = None


class BulkApprovalResult(msgspec.Struct, frozen=True):
    results: list[BulkItemResult]


class Operation(msgspec.Struct, frozen=True, omit_defaults=True):
    """Something the caller may do with the action now (gateway.services.operations)."""

    name: Literal["verdict", "cancel", "execute", "rollback", "approve", "reject"]
    method: str
    path: str
    role: str | None = None  # approve, reject: the role to sign in
    execution_id: str | None = None  # rollback: the execution it compensates


class ActionOperations(msgspec.Struct, frozen=True):
    action_id: str
    status: str
    operations: list[Operation]


class ActionRecord(msgspec.Struct, frozen=True):
    action_id: str
    tenant_id: str
    agent_id: str
    type: str
    action: dict[str, Any]
    action_hash: str
    rationale: str | None
    metadata: dict[str, Any] | None
    decision: str
    status: str
    reason: str
    matched_rules: list[str]
    policy_version: int | None
    policy_hash: str | None
    approvals_required: list[ApprovalRequirement] | None
    approval_expires_at: str | None
    signed_verdict: SignedVerdict | None
    audit_event_ids: list[int]
    created_at: str
    summary: str | None = None  # what approvers sign (Approval.summary)
    approvals: list[ApprovalView] = []
    decided_at: str | None = None  # when an escalated action was allowed, rejected, expired or cancelled
    risk: policy.RiskAssessment | None = None
    classification: policy.Classification | None = None
    limits: list[policy.LimitStatus] | None = None
    context: dict[str, Any] | None = None
    checks: list[policy.Check] | None = None
    executions: list[ExecutionView] = []  # oldest first (gateway.services.executions)
    require_approval: bool = False  # the agent asked for a human review (`require_approval`)
    operations: list[Operation] = []  # what the caller may do with it now


class ActionPage(msgspec.Struct, frozen=True):
    actions: list[ActionRecord]
    next_cursor: str | None


class VerdictSignerInfo(msgspec.Struct, frozen=True):
    address: str
    status: str
    not_before: str
    not_after: str | None


class Keys(msgspec.Struct, frozen=True):
    verdict_signers: list[VerdictSignerInfo]


class LogKey(msgspec.Struct, frozen=True):
    origin: str  # the checkpoints' origin line, also the key's name
    vkey: str  # C2SP signed-note verifier key: <name>+<hex key hash>+<base64(0x01 ‖ Ed25519 public key)>


class LogKeyInfo(msgspec.Struct, frozen=True):
    vkey: str
    status: str  # active | retired | next (scheduled by a rotation, from not_before)
    not_before: str
    not_after: str | None


class TenantLogKey(msgspec.Struct, frozen=True):
    origin: str  # the checkpoints' origin line, also the key's name
    vkey: str  # the active key: checkpoints from now on are signed by it
    history: list[LogKeyInfo]  # every log key, oldest first; retired ones verify older checkpoints


class TenantKeys(msgspec.Struct, frozen=True):
    log: TenantLogKey
    verdict_signers: list[VerdictSignerInfo]


class Proof(msgspec.Struct, frozen=True):
    proof: list[str]  # base64 hashes, RFC 9162 order


class BundleEntry(msgspec.Struct, frozen=True):
    index: int
    entry: str  # base64 of the exact stored bytes
    inclusion_proof: list[str]


class ProofBundle(msgspec.Struct, frozen=True):
    """`verdict-proof/v1`: verify offline with `verdict audit verify BUNDLE --vkey VKEY`."""

    format: str
    log: LogKey
    checkpoint: str  # C2SP signed checkpoint note
    entries: list[BundleEntry]


class AuditEntryView(msgspec.Struct, frozen=True):
    index: int
    entry: str  # base64 of the exact stored bytes


class AuditEntries(msgspec.Struct, frozen=True):
    entries: list[AuditEntryView]
    size: int


class SetRateLimit(Request):
    """Proposals per minute (1 to 1,000,000), or null to fall back to the tenant's (for an
    agent) or the default (for the tenant)."""

    propose_per_minute: int | None


class AgentRateLimit(msgspec.Struct, frozen=True):
    agent_id: str
    propose_per_minute: int


class RateLimits(msgspec.Struct, frozen=True):
    """A tenant's proposal rate limits: its own (null: the default), the one its agents get
    unless they have their own, and the agents that have their own."""

    default_propose_per_minute: int
    propose_per_minute: int | None
    effective_propose_per_minute: int
    agents: list[AgentRateLimit]
