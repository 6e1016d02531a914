"""Proposals and the action records they create.

The propose path: the agent is authenticated before (`gateway.authz`, from a 5 s cache),
evaluate the tenant's active policy version, sign an EIP-712 verdict on ALLOW, then append
the action row and its audit entries through the tenant's chain writer, which commits them
only if the agent's key is still live and the agent has proposals left this minute
(`gateway.ratelimit`); the answer goes out after the commit.

Idempotency: a proposal made with an `Idempotency-Key` stores its answer in the same commit
(`idempotency_keys`, per tenant, agent and key). The chain writer, which serializes every
commit of the tenant in every process, writes at most one unit per key: a repeat of the same
request gets the stored answer and creates nothing, another request with that key gets 409
`idempotency_conflict`. Records are kept IDEMPOTENCY_KEEP_SECONDS (24 h), then purged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from time import perf_counter
from typing import Any

import msgspec

import policy
from crypto.canonical import action_hash as compute_action_hash
from crypto.canonical import canonicalize
from crypto.eip712 import DECISION_ALLOW, Domain, VerdictMessage
from crypto.errors import CryptoError
from crypto.signing import DigestSigner, sign_verdict
from gateway import metrics, schemas, telemetry
from gateway.auth import AGENT, Principal
from gateway.clock import new_id, parse_rfc3339, rfc3339, rfc3339_seconds
from gateway.errors import AppError, InvalidRequest, NotFound, RateLimited, Unavailable, Unprocessable
from gateway.ledger import (
    IDEMPOTENCY_KEEP_SECONDS,
    ConfigChanged,
    EntryDraft,
    IdempotencyClaim,
    Ledger,
    PolicyVersionChanged,
    Unit,
)
from gateway.ratelimit import seconds_until_next_window
from gateway.services import lifecycle
from gateway.services.executions import executions_of, executions_of_actions
from gateway.services.history import claim_rows, decimal_amount, history_context, window_totals
from gateway.services.policies import PolicyService
from gateway.services.validation import ROLE
from gateway.storage import Conn, Database, Insert
from policy import AgentScope, CompiledPolicy, Decision, EvaluationInput, LimitClaim, ScopeInvalid, load_scope
from policy.action_types import DEFAULT_AMOUNT_PATHS, amount_problems
from policy.approvals import required_roles
from policy.document import TIMEOUT_MINUTES
from policy.requested import APPROVAL_REQUESTED, any_approver, escalate_on_request

STATUS_OF = {"ALLOW": "allowed", "ESCALATE": "pending_approval", "DENY": "denied"}
MAX_PAGE = 100
MAX_DECISION_ATTEMPTS = 5
# Concurrent proposals against one limit: each round commits at least one of them.
MAX_LIMIT_ATTEMPTS = 50
MAX_CACHED_AGENTS = 10_000
_AGENT_QUERY = (
    "SELECT a.name AS agent_name, a.scope, t.name AS tenant_name, t.chain_id, t.verifying_contract,"
    " t.active_policy_version, t.timezone, t.config_version FROM agents a JOIN tenants t ON t.id = a.tenant_id"
    " WHERE a.tenant_id = ? AND a.id = ?"
)
_COLUMNS = (
    "id, tenant_id, agent_id, type, action, action_hash, rationale, metadata, decision, status, reason,"
    " matched_rules, policy_version, policy_hash, approvals_required, approval_expires_at, signed_verdict,"
    " audit_event_ids, created_at, summary, required_roles, decided_at,"
    " risk, classification, limits, context, checks, proposed_reason, vendor, amount, require_approval"
)
_ACTION_COLUMNS = tuple(column.strip() for column in _COLUMNS.split(","))
_encode = msgspec.json.Encoder()
_decode_response = msgspec.json.Decoder(schemas.ProposeResponse)
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_IDEMPOTENCY_COLUMNS = (
    "tenant_id", "agent_id", "idempotency_key", "request_hash", "action_id", "response", "created_at"
)  # fmt: skip


def check_idempotency_key(key: str) -> str:
    """Raises InvalidRequest (`invalid_idempotency_key`) unless `key` is 1-255 visible ASCII
    characters (a UUID is the usual choice)."""
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters", code="invalid_idempotency_key"
        )
    return key


def request_hash(body: schemas.ProposeRequest) -> str:
    """What "the same request" means for an idempotency key: the SHA-256 of the body's RFC 8785
    form, so key order and whitespace do not matter."""
    plain = msgspec.to_builtins(body)
    if not body.require_approval:  # the hash of requests made before the flag existed
        del plain["require_approval"]
    try:
        raw = canonicalize(plain)
    except CryptoError:  # e.g. an integer beyond 2**53 in metadata: compare its JSON as sent
        raw = _encode.encode(plain)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Proposed:
    """The answer to a proposal; `replayed` when it is the stored answer to an earlier request
    with the same idempotency key."""

    response: schemas.ProposeResponse
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Checked:
    """A proposal that passed the checks made before deciding (`ActionService._check`)."""

    tenant_id: str
    claim: IdempotencyClaim | None
    action_type: str
    digest: bytes  # the action's hash (RFC 8785, keccak-256)


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision ready to commit: its ledger unit, and the answer once the unit committed."""

    unit: Unit
    respond: Callable[[list[int]], schemas.ProposeResponse]

    def answer(self, seqs: list[int]) -> Proposed:
        """The answer for the committed unit (the stored one when its idempotency key replayed)."""
        if self.unit.replay is not None:
            return Proposed(_decode_response.decode(self.unit.replay), replayed=True)
        return Proposed(self.respond(seqs))


def check_action(action: dict[str, Any]) -> str:
    """Return the action's type. Raises Unprocessable for a missing type or a float anywhere
    (money travels as decimal strings; a float cannot be hashed the same way by every parser)."""
    action_type = action.get("type")
    if not isinstance(action_type, str) or not 0 < len(action_type) <= 128:
        raise Unprocessable(
            "action.type must be a non-empty string", code="invalid_action", field="action.type"
        )
    stack: list[tuple[str, Any]] = [("action", action)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float):
            raise Unprocessable(
                f'{path} is a floating-point number; send amounts as decimal strings like "7800.00"',
                code="float_not_allowed",
                field=path,
            )
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}", item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return action_type


def check_amounts(action: dict[str, Any], compiled: CompiledPolicy | None) -> None:
    """Raises Unprocessable (`invalid_amount`, naming the first bad field and listing all) unless
    every amount of `action` the policy declares (its type's `amount_field` and `amount_fields`,
    `amount` without a policy or a declaration, each limit's `sum` field) is a plain decimal
    string, not negative unless the type has `allow_negative: true` (`policy.decimals`)."""
    if compiled is not None:
        problems = compiled.amount_problems(action)
    else:
        problems = amount_problems(action, DEFAULT_AMOUNT_PATHS)
    if problems:
        field, why = problems[0]
        raise Unprocessable(
            f"{field} {why}",
            code="invalid_amount",
            field=field,
            fields=[{"field": f, "message": m} for f, m in problems],
        )


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What never changes about an agent and its tenant."""

    agent_id: str
    agent_name: str
    tenant_id: str
    tenant_name: str
    domain: Domain


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What decisions read that a tenant admin may change: the agent's scope and the tenant's
    time zone, as of the tenant's configuration `version` (checked again at commit)."""

    version: int
    timezone: str | None
    scope: AgentScope | None


class LimitsChanged(AppError):
    """Under the chain lock, a limit's window total no longer gives the decision made; decide again."""

    status, code, title = 503, "limits_changed", "Limit totals keep changing"
    retry_after_seconds = 1


def scope_of(text: str | None) -> AgentScope | None:
    """A stored scope (validated when it was set). Raises ScopeInvalid for a corrupt one."""
    return load_scope(json.loads(text)) if text is not None else None


def same_outcome(a: Decision, b: Decision) -> bool:
    """Whether two decisions differ at most in their window totals and trace."""
    return (
        a.decision == b.decision
        and a.reason == b.reason
        and a.matched_rules == b.matched_rules
        and a.approvals_required == b.approvals_required
        and a.timeout_minutes == b.timeout_minutes
    )


@functools.lru_cache(maxsize=1024)
def _rules_json(rule_ids: tuple[str, ...]) -> str:
    """`json.dumps` of the matched rule ids (the stored column's form); a policy has few sets."""
    return json.dumps(list(rule_ids))


def _json(value: Any) -> str | None:
    return _encode.encode(value).decode() if value is not None else None


class ActionService:
    def __init__(self, db: Database, ledger: Ledger, policies: PolicyService, signer: DigestSigner) -> None:
        self.db = db
        self.ledger = ledger
        self.policies = policies
        self.signer = signer
        # (tenant, agent) -> names and EIP-712 domain; none of them ever changes
        self._agents: dict[tuple[str, str], AgentContext] = {}
        # (tenant, agent) -> scope and time zone, valid while the tenant's configuration version
        # is the one in `_config_version` (re-checked at commit by the chain writer)
        self._configs: dict[tuple[str, str], AgentConfig] = {}
        self._config_version: dict[str, int] = {}  # tenant -> newest configuration version seen
        self._active: dict[str, int | None] = {}  # tenant -> active policy version, as last seen

    async def _agent(self, tenant_id: str, agent_id: str) -> tuple[AgentContext, AgentConfig]:
        """The agent's names, its tenant's domain (immutable), its scope and the tenant's time
        zone, cached; the active policy version and the configuration version are re-checked at
        commit by the chain writer. Raises NotFound."""
        key = (tenant_id, agent_id)
        context, config = self._agents.get(key), self._configs.get(key)
        if context is not None and config is not None and config.version == self._config_version[tenant_id]:
            return context, config
        async with self.db.read() as conn:
            row = await conn.fetchrow(_AGENT_QUERY, tenant_id, agent_id)
        if row is None:
            raise NotFound(f"agent {agent_id!r} not found", code="agent_not_found")
        context = AgentContext(
            agent_id=agent_id,
            agent_name=row["agent_name"],
            tenant_id=tenant_id,
            tenant_name=row["tenant_name"],
            domain=Domain(int(row["chain_id"]), row["verifying_contract"]),
        )
        try:
            scope = scope_of(row["scope"])
        except (ValueError, ScopeInvalid) as exc:  # fail closed: no decision on a corrupt scope
            raise Unavailable(f"agent {agent_id!r} has an unreadable scope", code="scope_unreadable") from exc
        version = int(row["config_version"])
        config = AgentConfig(version, row["timezone"], scope)
        self._active.setdefault(tenant_id, row["active_policy_version"])
        self._config_version[tenant_id] = max(version, self._config_version.get(tenant_id, version))
        if len(self._agents) >= MAX_CACHED_AGENTS:
            self._agents.clear()
            self._configs.clear()
        self._agents[key] = context
        self._configs[key] = config
        return context, config

    async def _requested(self, compiled: CompiledPolicy, tenant_id: str) -> Callable[[Decision], Decision]:
        """What `require_approval` makes of a decision (`policy.requested`): the policy's
        `defaults.requested_approvals`, else one of the tenant's current approvers in any role."""
        requirement = compiled.requested_approvals
        if requirement is None:
            async with self.db.read() as conn:
                rows = await conn.fetch(
                    "SELECT roles FROM approvers WHERE tenant_id = ? AND removed_at IS NULL", tenant_id
                )
            requirement = any_approver(role for row in rows for role in json.loads(row["roles"]))
        timeout = compiled.default_timeout_minutes

        def requested(decision: Decision) -> Decision:
            return escalate_on_request(decision, requirement, timeout)

        return requested

    def forget_config(self, tenant_id: str, version: int) -> None:
        """The tenant's configuration is now at least `version`: re-read scopes and time zone."""
        self._config_version[tenant_id] = max(version, self._config_version.get(tenant_id, version))

    async def propose(
        self,
        principal: Principal,
        agent_id: str,
        body: schemas.ProposeRequest,
        now: datetime,
        idempotency_key: str | None = None,
        *,
        explain: bool = True,
    ) -> Proposed:
        """Decide a proposal of the agent `principal` (a credential of role agent); `explain`
        false skips the trace. Raises NotFound for another agent, Unprocessable
        (`invalid_amount` for an amount that is not a plain decimal string, see `check_amounts`;
        `invalid_parameters` with every violation of the action type's schema), Unauthenticated when the key was revoked or
        expired before the commit, RateLimited when the agent has no proposals left this
        minute, InvalidRequest and Conflict (`idempotency_conflict`) for idempotency keys,
        Overloaded when the tenant's chain writer has too much waiting; never answers before the action and its audit entries are committed."""
        checked = self._check(principal, agent_id, body, now, idempotency_key)
        tenant_id = checked.tenant_id
        self.ledger.verify_room(tenant_id, 1)  # shed load before deciding, not after
        changes = limit_changes = 0
        while changes < MAX_DECISION_ATTEMPTS and limit_changes < MAX_LIMIT_ATTEMPTS:
            try:
                decided = await self._decide_now(principal, agent_id, checked, body, now, explain)
                return decided.answer(await self.ledger.append(tenant_id, decided.unit))
            except PolicyVersionChanged as changed:  # activated meanwhile: decide under the new one
                self._active[tenant_id] = changed.active
                changes += 1
            except ConfigChanged as changed:  # a scope or the time zone changed: read them again
                self.forget_config(tenant_id, changed.version)
                changes += 1
            except LimitsChanged:  # other proposals took the headroom meanwhile: count again
                limit_changes += 1
        raise Unavailable("the active policy or its limits keep changing; retry", code="policy_changed")

    def _check(
        self,
        principal: Principal,
        agent_id: str,
        body: schemas.ProposeRequest,
        now: datetime,
        idempotency_key: str | None,
    ) -> Checked:
        """What `propose` checks before deciding: the tenant, the idempotency claim, the action's
        type and hash. Raises as `propose` does (NotFound, RateLimited, InvalidRequest,
        Unprocessable)."""
        tenant_id = principal.tenant_id
        if (
            tenant_id is None
            or principal.agent_id != agent_id
            or (body.tenant_id is not None and body.tenant_id != tenant_id)
        ):
            raise NotFound(f"agent {agent_id!r} not found", code="agent_not_found")
        claim = None
        if idempotency_key is not None:
            claim = IdempotencyClaim(agent_id, check_idempotency_key(idempotency_key), request_hash(body))
        elif self.ledger.is_rate_limited(tenant_id, agent_id, now.timestamp()):
            # refused already in this window (counts only grow): spare the policy and signing
            raise RateLimited(
                f"agent {agent_id!r} has no proposals left this minute",
                retry_after_seconds=seconds_until_next_window(now.timestamp()),
            )
        action_type = check_action(body.action)
        try:
            digest = compute_action_hash(body.action)
        except CryptoError as exc:
            raise Unprocessable(f"action cannot be hashed: {exc}", code="invalid_action") from exc
        return Checked(tenant_id, claim, action_type, digest)

    async def _decide_now(
        self,
        principal: Principal,
        agent_id: str,
        checked: Checked,
        body: schemas.ProposeRequest,
        now: datetime,
        explain: bool,
    ) -> Decided:
        """Decide with the agent's current configuration (`_agent`). Raises NotFound,
        Unavailable (`scope_unreadable`), Unprocessable, and what `_decide` raises."""
        who, config = await self._agent(checked.tenant_id, agent_id)
        return await self._decide(who, config, principal.credential, checked, body, now, explain)

    async def propose_many(
        self,
        principal: Principal,
        agent_id: str,
        bodies: list[tuple[schemas.ProposeRequest, str | None]],
        now: datetime,
        *,
        explain: bool = True,
    ) -> list[Proposed | AppError]:
        """Decide each (body, idempotency key) exactly as `propose` would, and commit them in one
        group commit: every decided unit is handed to the tenant's chain writer at once. Returns,
        in order, each one's answer or the AppError `propose` would have raised for it. An item
        whose commit found the policy, the configuration or its limits changed is decided again
        alone (as `propose` does). Raises NotFound for another agent, Overloaded (nothing
        decided) when the tenant's chain writer has no room for them all."""
        tenant_id = principal.tenant_id
        if tenant_id is None or principal.agent_id != agent_id:
            raise NotFound(f"agent {agent_id!r} not found", code="agent_not_found")
        self.ledger.verify_room(tenant_id, len(bodies))  # shed load before deciding, not after
        results: list[Proposed | AppError | None] = [None] * len(bodies)
        pending: list[tuple[int, Decided]] = []
        for index, (body, key) in enumerate(bodies):
            try:
                checked = self._check(principal, agent_id, body, now, key)
                decided = await self._decide_now(principal, agent_id, checked, body, now, explain)
            except (PolicyVersionChanged, ConfigChanged, LimitsChanged):
                continue  # decided alone below, with the retries of `propose`
            except AppError as error:
                results[index] = error
                continue
            pending.append((index, decided))
        if pending:
            committed = await self.ledger.append_all(tenant_id, [decided.unit for _, decided in pending])
            for (index, decided), outcome in zip(pending, committed, strict=True):
                if isinstance(outcome, PolicyVersionChanged):
                    self._active[tenant_id] = outcome.active
                    continue
                if isinstance(outcome, ConfigChanged):
                    self.forget_config(tenant_id, outcome.version)
                    continue
                if isinstance(outcome, LimitsChanged):
                    continue
                if isinstance(outcome, AppError):
                    results[index] = outcome
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    results[index] = decided.answer(outcome)
        for index, result in enumerate(results):
            if result is None:  # decide again alone, as `propose` does after such a change
                body, key = bodies[index]
                try:
                    results[index] = await self.propose(principal, agent_id, body, now, key, explain=explain)
                except AppError as error:
                    results[index] = error
        return [result for result in results if result is not None]

    async def _decide(
        self,
        who: AgentContext,
        config: AgentConfig,
        key_id: str | None,
        checked: Checked,
        body: schemas.ProposeRequest,
        now: datetime,
        explain: bool,
    ) -> Decided:
        tenant_id, agent_id = who.tenant_id, who.agent_id
        claim, action_type, digest = checked.claim, checked.action_type, checked.digest
        action_hash = "0x" + digest.hex()
        version = self._active.get(tenant_id)
        compiled: CompiledPolicy | None = None
        claims: list[LimitClaim] = []
        request: EvaluationInput | None = None
        if version is None:
            check_amounts(body.action, None)
            decision = Decision(decision="DENY", reason="no_active_policy", matched_rules=[],
                                approvals_required=None, timeout_minutes=None, checks=[])  # fmt: skip
            policy_hash = None
            ttl = 0
        else:
            active = await self.policies.compiled(tenant_id, int(version))
            compiled = active.compiled
            # (1) a proposal with a malformed amount, or breaking its type's schema, is refused:
            # nothing is created
            check_amounts(body.action, compiled)
            violations = compiled.check_parameters(body.action)
            if violations:
                raise Unprocessable(
                    f"the action breaks the {action_type} parameters schema ({len(violations)} violation(s))",
                    code="invalid_parameters",
                    violations=[{"pointer": v.pointer, "message": v.message} for v in violations],
                )
            tenant: dict[str, Any] = {"id": tenant_id, "name": who.tenant_name}
            if config.timezone is not None:
                tenant["timezone"] = config.timezone
            request = EvaluationInput(
                action=body.action,
                agent={"id": agent_id, "name": who.agent_name},
                tenant=tenant,
                now=now,
                scope=config.scope,
            )
            # (2) history context and (3) limit totals: read only what the policy reads
            needs = compiled.context_needs
            if needs:
                async with self.db.read() as conn:
                    context = await history_context(conn, tenant_id, agent_id, needs, body.action, now)
                request = replace(request, context=context)
            claims = compiled.limit_claims(request)
            if claims:
                async with self.db.read() as conn:
                    request = replace(request, usage=await window_totals(conn, tenant_id, claims, now))
            requested = await self._requested(compiled, tenant_id) if body.require_approval else None
            with telemetry.span("evaluate", policy_version=int(version)):  # (4)
                began = perf_counter()
                decision = compiled.evaluate(request, explain=explain)
                metrics.POLICY_EVALUATION.observe(perf_counter() - began)
            if requested is not None:  # the agent asked for a review: ALLOW becomes ESCALATE
                decision = requested(decision)
            policy_hash, ttl = active.hash, compiled.verdict_ttl_seconds
        # (5) allowed and pending actions count against limits
        kept = claims if decision.decision in ("ALLOW", "ESCALATE") else []

        action_id = new_id("act")
        created_at = rfc3339(now)
        signed = None
        if decision.decision == "ALLOW":
            issued_at = int(now.timestamp())
            message = VerdictMessage(
                action_id=action_id,
                action_hash=digest,
                tenant=tenant_id,
                agent=agent_id,
                action_type=action_type,
                decision=DECISION_ALLOW,
                policy_version=int(version),
                policy_hash=bytes.fromhex(policy_hash[2:]),
                issued_at=issued_at,
                expires_at=issued_at + ttl,
            )
            with telemetry.span("sign", action_id=action_id):
                result = sign_verdict(self.signer, who.domain, message)
            signed = schemas.SignedVerdict(
                result.typed_data, result.signature, result.signer, rfc3339_seconds(issued_at + ttl)
            )
        approvals = list(decision.approvals_required) if decision.approvals_required else None
        approval_expires_at = (
            rfc3339(now + timedelta(minutes=decision.timeout_minutes or TIMEOUT_MINUTES[2]))
            if decision.decision == "ESCALATE"
            else None
        )
        status = STATUS_OF[decision.decision]
        approvals_plain = msgspec.to_builtins(approvals)
        summary = required = None
        if approvals:  # what approvers' wallets show them, and whose answers count
            summary = compiled.render_summary(body.action) if compiled is not None else None
            if summary is not None and decision.reason == APPROVAL_REQUESTED:  # the wallet says why
                summary = f"Review requested by agent {agent_id}: {summary}"
            required = "," + ",".join(sorted(required_roles(approvals))) + ","
        record = {
            "agent": agent_id,
            "action": body.action,
            "action_hash": action_hash,
            "rationale": body.rationale,
            "metadata": body.metadata,
            "decision": decision.decision,
            "status": status,
            "reason": decision.reason,
            "matched_rules": list(decision.matched_rules),
            "policy_version": version,
            "policy_hash": policy_hash,
            "approvals_required": approvals_plain,
            "approval_expires_at": approval_expires_at,
        }
        if body.require_approval:  # only then, so entries of other proposals keep their form
            record["require_approval"] = True
        if summary is not None:
            record["summary"] = summary
        outcome = Outcome(decision, record)
        drafts = [EntryDraft("action.proposed", f"agent:{agent_id}", record, action_id)]
        if signed is not None:
            drafts.append(
                EntryDraft(
                    "verdict.issued",
                    "gateway",
                    {"typed_data": signed.typed_data, "signature": signed.signature, "signer": signed.signer},
                    action_id,
                )
            )
        verdict_json = _encode.encode(signed).decode() if signed is not None else None
        fields = compiled.action_fields(action_type) if compiled is not None else None
        amount = decimal_amount(body.action, fields) if fields is not None else None
        vendor = body.action.get("vendor")
        vendor = vendor if isinstance(vendor, str) else None

        def respond(seqs: list[int]) -> schemas.ProposeResponse:
            final = outcome.decision
            return schemas.ProposeResponse(
                action_id=action_id,
                decision=final.decision,
                status=status,
                reason=final.reason,
                matched_rules=list(final.matched_rules),
                policy_version=version,
                policy_hash=policy_hash,
                approvals_required=approvals,
                signed_verdict=signed,
                audit_event_id=seqs[0],
                action_hash=action_hash,
                risk=final.risk,
                classification=final.classification,
                limits=final.limits,
                context=final.context,
                checks=final.checks or None,
            )

        def inserts(seqs: list[int]) -> list[Insert]:
            final = outcome.decision
            rows = [
                Insert(
                    "actions",
                    _ACTION_COLUMNS,
                    (
                        action_id, tenant_id, agent_id, action_type, _encode.encode(body.action).decode(),
                        action_hash, body.rationale,
                        _encode.encode(body.metadata).decode() if body.metadata is not None else None,
                        final.decision, status, final.reason, _rules_json(tuple(final.matched_rules)),
                        version, policy_hash,
                        _encode.encode(approvals_plain).decode() if approvals is not None else None,
                        approval_expires_at, verdict_json, json.dumps(seqs), created_at,
                        summary, required, None,
                        _json(final.risk), _json(final.classification), _json(final.limits),
                        _json(final.context), _json(final.checks or None), final.reason, vendor, amount,
                        1 if body.require_approval else None,
                    ),
                )
            ]  # fmt: skip
            rows.extend(claim_rows(tenant_id, action_id, kept, created_at))
            if claim is not None:
                claim.response = _encode.encode(respond(seqs)).decode()
                rows.append(
                    Insert(
                        "idempotency_keys",
                        _IDEMPOTENCY_COLUMNS,
                        (tenant_id, agent_id, claim.key, claim.request_hash, action_id, claim.response,
                         created_at),
                    )
                )  # fmt: skip
            return rows

        prepare = None
        if claims and compiled is not None and request is not None and request.usage is not None:
            # Only proposals that limits apply to pay for the locked path (the totals must be
            # read under the chain lock); the others keep the fast path.
            limited, evaluated, used = compiled, request, dict(request.usage)
            again_requested = requested

            async def prepare(conn: Conn) -> None:
                """Under the chain lock the totals are exact: the decision must still hold with them."""
                fresh = await window_totals(conn, tenant_id, claims, now)
                if fresh == used:
                    outcome.adopt(decision)
                    return
                again = limited.evaluate(replace(evaluated, usage=fresh), explain=explain)
                if again_requested is not None:
                    again = again_requested(again)
                if not same_outcome(again, decision):
                    raise LimitsChanged("the limit totals changed before the commit")
                outcome.adopt(again)  # the same decision; its totals and trace as committed

        unit = Unit(
            drafts,
            inserts=inserts,
            prepare=prepare,
            expects_policy=True,
            policy_version=version,
            config_version=config.version,
            credential=key_id,
            rate_agent=agent_id,
            idempotency=claim,
        )
        outcome.adopt(decision)
        return Decided(unit, respond)

    async def get(self, principal: Principal, action_id: str) -> schemas.ActionRecord:
        """Raises NotFound for a missing action or one this principal may not see. A pending
        action past its approval window is expired first (`lifecycle`)."""

        async def fetch() -> dict[str, Any]:
            async with self.db.read() as conn:
                # the caller's own tenant only: another tenant's action is not found anyway
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM actions WHERE tenant_id = ? AND id = ?",
                    principal.tenant_id,
                    action_id,
                )
                if row is None:
                    raise NotFound(f"action {action_id!r} not found", code="action_not_found")
                self.check_can_read(principal, row)
                answers = (
                    await conn.fetch(lifecycle.ANSWERS_SQL, row["tenant_id"], action_id)
                    if row["approvals_required"]
                    else []
                )
                executions = await executions_of(conn, row["tenant_id"], action_id)
            return {**row, "approvals": answers, "executions": executions}

        row = await lifecycle.current(self.ledger, await fetch(), fetch)
        return _record(row)

    @staticmethod
    def check_can_read(principal: Principal, row: dict[str, Any]) -> None:
        """Another tenant's action, or (for an agent) another agent's, is hidden as not found;
        which roles may read actions at all is `gateway.authz`'s table."""
        if principal.tenant_id != row["tenant_id"] or (
            principal.role == AGENT and principal.agent_id != row["agent_id"]
        ):
            raise NotFound(f"action {row['id']!r} not found", code="action_not_found")

    async def list(
        self,
        principal: Principal,
        *,
        tenant_id: str | None,
        agent_id: str | None,
        decision: str | None,
        status: str | None,
        action_type: str | None,
        role: str | None = None,
        created_from: str | None,
        created_to: str | None,
        limit: int,
        cursor: str | None,
    ) -> schemas.ActionPage:
        """Newest first, `limit` ≤ 100, cursor = the last id of the previous page. Another
        tenant answers NotFound; an agent sees only its own actions. `role`: only actions whose
        approvals count answers in that role (with `status=pending_approval`: what an approver
        holding it can act on). Overdue pending actions are expired first."""
        tenant_id = tenant_id or principal.tenant_id
        if tenant_id is None or tenant_id != principal.tenant_id:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
        if principal.role == AGENT:
            if agent_id is not None and agent_id != principal.agent_id:
                return schemas.ActionPage([], None)
            agent_id = principal.agent_id
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit")
        where, args = ["tenant_id = ?"], [tenant_id]
        for column, value in (
            ("agent_id", agent_id),
            ("decision", decision),
            ("status", status),
            ("type", action_type),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for op, value, name in ((">=", created_from, "from"), ("<", created_to, "to")):
            if value is not None:
                try:
                    args.append(rfc3339(parse_rfc3339(value)))
                except ValueError as exc:
                    raise InvalidRequest(f"{name} must be an RFC 3339 time", code="invalid_time") from exc
                where.append(f"created_at {op} ?")
        if role is not None:
            if not ROLE.fullmatch(role):
                raise InvalidRequest(f"role must match {ROLE.pattern}", code="invalid_role")
            where.append("required_roles LIKE ?")
            args.append(f"%,{role},%")
        if status in (None, lifecycle.PENDING, lifecycle.EXPIRED):
            await lifecycle.expire_overdue(self.db, self.ledger, tenant_id)
        if cursor is not None:
            if not cursor.startswith("act_") or len(cursor) != 30:
                raise InvalidRequest("cursor is not one this API returned", code="invalid_cursor")
            where.append("id < ?")
            args.append(cursor)
        sql = f"SELECT {_COLUMNS} FROM actions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        async with self.db.read() as conn:
            rows = await conn.fetch(sql, *args, limit + 1)
            escalated = [row["id"] for row in rows[:limit] if row["approvals_required"]]
            answers: dict[str, list[dict[str, Any]]] = {}
            if escalated:
                found = await conn.fetch(
                    "SELECT action_id, signer, role, approve, kind, comment, signed_at FROM approvals"
                    f" WHERE tenant_id = ? AND action_id IN ({', '.join('?' * len(escalated))})"
                    " ORDER BY signed_at, signer",
                    tenant_id,
                    *escalated,
                )
                for answer in found:
                    answers.setdefault(answer["action_id"], []).append(answer)
            executed = await executions_of_actions(conn, tenant_id, [row["id"] for row in rows[:limit]])
        page = [
            _record(
                {**row, "approvals": answers.get(row["id"], []), "executions": executed.get(row["id"], [])}
            )
            for row in rows[:limit]
        ]
        return schemas.ActionPage(page, page[-1].action_id if len(rows) > limit else None)


async def purge_idempotency_keys(db: Database, now: datetime) -> None:
    """Delete idempotency records older than IDEMPOTENCY_KEEP_SECONDS. (The chain writer treats
    an older record as absent anyway; this only keeps the table small.)"""
    cutoff = rfc3339(now.astimezone(UTC) - timedelta(seconds=IDEMPOTENCY_KEEP_SECONDS))
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", cutoff)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


class Outcome:
    """The decision a proposal commits with, and its `action.proposed` entry data: under the
    chain lock a limit re-check may replace the decision with the same one at exact totals."""

    __slots__ = ("decision", "record")

    def __init__(self, decision: Decision, record: dict[str, Any]) -> None:
        self.decision = decision
        self.record = record

    def adopt(self, decision: Decision) -> None:
        self.decision = decision
        record = self.record
        for name in ("risk", "classification", "limits", "context"):
            value = getattr(decision, name)
            if value is not None:
                record[name] = msgspec.to_builtins(value)
        # The explain trace is kept on the action row, not in the log: it is derived (the pinned
        # policy re-evaluated on the logged action gives it again), and writing it into every
        # entry cost ~9% of ALLOW throughput.


_RISK = msgspec.json.Decoder(policy.RiskAssessment | None)
_CLASSIFICATION = msgspec.json.Decoder(policy.Classification | None)
_LIMITS = msgspec.json.Decoder(list[policy.LimitStatus] | None)
_CHECKS = msgspec.json.Decoder(list[policy.Check] | None)


def _decoded(decoder: msgspec.json.Decoder, text: str | None) -> Any:
    return decoder.decode(text) if text is not None else None


def _record(row: dict[str, Any]) -> schemas.ActionRecord:
    approvals = _loads(row["approvals_required"])
    verdict = _loads(row["signed_verdict"])
    return schemas.ActionRecord(
        action_id=row["id"],
        tenant_id=row["tenant_id"],
        agent_id=row["agent_id"],
        type=row["type"],
        action=json.loads(row["action"]),
        action_hash=row["action_hash"],
        rationale=row["rationale"],
        metadata=_loads(row["metadata"]),
        decision=row["decision"],
        status=row["status"],
        reason=row["reason"],
        matched_rules=json.loads(row["matched_rules"]),
        policy_version=int(row["policy_version"]) if row["policy_version"] is not None else None,
        policy_hash=row["policy_hash"],
        approvals_required=msgspec.convert(approvals, list[schemas.ApprovalRequirement])
        if approvals
        else None,
        approval_expires_at=row["approval_expires_at"],
        signed_verdict=schemas.SignedVerdict(**verdict) if verdict else None,
        audit_event_ids=json.loads(row["audit_event_ids"]),
        created_at=row["created_at"],
        summary=row["summary"],
        approvals=[lifecycle.approval_view(a) for a in row.get("approvals", ())],
        decided_at=row["decided_at"],
        risk=_decoded(_RISK, row["risk"]),
        classification=_decoded(_CLASSIFICATION, row["classification"]),
        limits=_decoded(_LIMITS, row["limits"]),
        context=_loads(row["context"]),
        checks=_decoded(_CHECKS, row["checks"]),
        executions=row.get("executions", []),
        require_approval=bool(row["require_approval"]),
    )
