"""Verdict policies: the ``verdict.policy/v1`` document, its validation, and evaluation into decisions.

Publishing (once per version; cache the result by tenant and version)::

    loaded = load_policy(body, "application/yaml")   # raises PolicyInvalid with every problem
    compiled = loaded.compiled                       # immutable, thread-safe

Deciding on a proposal (the gateway, in this order)::

    # (1) parameters: a non-empty list means 422 with every violation by JSON pointer, no action created
    violations = compiled.check_parameters(action)              # list[ParameterViolation]
    # (2) history context: query only what the policy reads
    compiled.context_needs          # frozenset like {"vendor.first_seen", "agent.spend.24h"}
    # (3) limits: which buckets this action would add to, then their window totals
    request = EvaluationInput(action, agent, tenant, now, context=context, scope=agent_scope)
    claims = compiled.limit_claims(request)                     # list[LimitClaim(id, key, window_seconds, amount)]
    usage = {claim.id: <total of (tenant, claim.id, claim.key) over claim.window_seconds>}
    # (4) decide; never raises. explain=False skips the trace (faster)
    decision = compiled.evaluate(dataclasses.replace(request, usage=usage), explain=True)
    # (5) on ALLOW or ESCALATE record the claims so later totals count this action
    summary = compiled.render_summary(action)                  # "Pay 7,800.00 USDC to acme for inv_1"

``tenant`` may carry ``timezone`` (IANA) for ``business_hours``/``is_weekend``.
Scopes are stored by the gateway and checked here: ``load_scope(json) -> AgentScope``
(raises ``ScopeInvalid``), or alone with ``check_scope(scope, action, compiled.action_fields(type))``.
Evaluation also turns parameter violations into DENY ``invalid_parameters`` (with
``decision.violations``), so a gateway that skips step (1) still fails closed.

Offline tools: :mod:`policy.testing` (``load_cases``, ``run_cases``) and
:mod:`policy.simulate` (``simulate(draft, recorded) -> list[DecisionChange]``).

Evaluation never raises; an error in a rule or limit denies (``policy_error:<id>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.decision import (
    Classification,
    LimitClaim,
    LimitStatus,
    ParameterViolation,
    RiskAssessment,
    RiskFactorScore,
)
from policy.errors import DocumentUnreadable, PolicyError, PolicyInvalid, Problem, UnsupportedMediaType
from policy.evaluate import ApprovalRequirement, Check, CompiledPolicy, Decision, EvaluationInput, RoleQuota
from policy.load import LoadedPolicy, compile_document, load_policy
from policy.scopes import ActionFields, AgentScope, ScopeInvalid, check_scope, load_scope, validate_scope
from policy.simulate import DecisionChange, RecordedRequest, simulate


def render_summary(compiled: CompiledPolicy, action: Mapping[str, Any]) -> str:
    """The approver's sentence for ``action`` under ``compiled`` (same as ``compiled.render_summary``)."""
    return compiled.render_summary(action)


__all__ = [
    "ActionFields",
    "AgentScope",
    "ApprovalRequirement",
    "Check",
    "Classification",
    "CompiledPolicy",
    "Decision",
    "DecisionChange",
    "DocumentUnreadable",
    "EvaluationInput",
    "LimitClaim",
    "LimitStatus",
    "LoadedPolicy",
    "ParameterViolation",
    "PolicyError",
    "PolicyInvalid",
    "Problem",
    "RecordedRequest",
    "RiskAssessment",
    "RiskFactorScore",
    "RoleQuota",
    "ScopeInvalid",
    "UnsupportedMediaType",
    "check_scope",
    "compile_document",
    "load_policy",
    "load_scope",
    "render_summary",
    "simulate",
    "validate_scope",
]
