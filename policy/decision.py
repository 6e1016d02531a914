"""The values evaluation takes and gives: :class:`EvaluationInput` in, :class:`Decision` out.

Wire types are msgspec Structs; fields added after the first release have
defaults and are omitted from the JSON when unset, so a document without risk,
classifications, action types or limits encodes its decisions exactly as
before (STYLE.md: never rename, new fields get defaults).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from policy.scopes import AgentScope

__all__ = [
    "ApprovalRequirement",
    "Check",
    "Classification",
    "Decision",
    "EvaluationInput",
    "LimitClaim",
    "LimitStatus",
    "ParameterViolation",
    "RiskAssessment",
    "RiskFactorScore",
    "RoleQuota",
]


@dataclass(frozen=True, slots=True)
class EvaluationInput:
    """What a policy decides on.

    ``agent`` and ``tenant`` hold ``{"id", "name"}`` (``tenant`` may add
    ``timezone``, an IANA name; UTC when absent); ``now`` is aware UTC.
    The gateway supplies, when the policy asks for them:

    - ``context``: history values named by ``CompiledPolicy.context_needs``,
      nested as ``{"vendor": {"first_seen": bool, "prior_count": int},
      "agent": {"spend": {"24h": "1200.00"}, "count": {"24h": 3}}}``;
    - ``usage``: for each limit in ``CompiledPolicy.limit_claims(request)``,
      the current total of its bucket in its window (``{limit_id: Decimal}``),
      not counting this action;
    - ``scope``: the agent's scope, checked before any rule.
    """

    action: dict[str, Any]
    agent: dict[str, Any]
    tenant: dict[str, Any]
    now: datetime.datetime
    context: Mapping[str, Any] | None = None
    usage: Mapping[str, Decimal] | None = None
    scope: AgentScope | None = None


class RoleQuota(msgspec.Struct, frozen=True):
    """At least ``min`` distinct signers approving in ``role``."""

    role: str
    min: int


class ApprovalRequirement(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one matched ESCALATE rule (or tripped ESCALATE limit) asks for.

    See :mod:`policy.approvals` for the counting. Either ``threshold`` distinct
    signers approving in any of ``roles``, or every quota of ``all_of``; exactly
    one of the two forms is set. ``rule`` is the rule id or the limit id.
    """

    rule: str
    threshold: int | None = None
    roles: tuple[str, ...] | None = None
    all_of: tuple[RoleQuota, ...] | None = None


class Check(msgspec.Struct, frozen=True, omit_defaults=True):
    """How one rule (or limit, risk factor, ...) fared: the explain trace, in evaluation order.

    ``conditions`` holds a line per condition evaluated, each with the values
    compared, such as ``action.amount 7800.00 > 5000: matched`` or
    ``when action.type == "trade" [action.type "pay_invoice"]: not matched``.
    ``error`` is set when the item matched as an evaluation error. ``kind``
    says what was checked: ``rule`` (omitted when encoded), ``scope``,
    ``action_type``, ``risk_factor`` or ``limit``; ``rule`` then holds that
    item's id or name.
    """

    rule: str
    matched: bool
    error: str | None
    conditions: list[str]
    kind: str = "rule"


class RiskFactorScore(msgspec.Struct, frozen=True):
    name: str
    score: int


class RiskAssessment(msgspec.Struct, frozen=True):
    """The action's risk: ``score`` 0..100, its ``level`` and the factors that added to it."""

    score: int
    level: str
    factors: list[RiskFactorScore]


class Classification(msgspec.Struct, frozen=True):
    """The data tier of the resource an action touches.

    ``source`` is ``policy`` (the document's ``classifications``), ``unknown``
    (a resource type the document does not list: tier ``critical``, modifier
    1.5, fail-secure) or ``agent`` (no resource type; the agent's
    ``data_sensitivity`` stands, modifier 1).
    """

    resource_type: str | None
    tier: str
    risk_modifier: str
    source: str


class LimitStatus(msgspec.Struct, frozen=True):
    """One applicable limit: its bucket's window total before this action, and whether it tripped.

    Amounts are decimal strings; ``headroom`` is what may still pass in the
    window (``max - total``, never below 0); ``amount`` is what this action adds.
    """

    id: str
    window: str
    key: str
    total: str
    amount: str
    max: str
    headroom: str
    tripped: bool


class LimitClaim(msgspec.Struct, frozen=True):
    """What an action adds to one limit's bucket, for the gateway to count and look up.

    ``key`` is the bucket (the ``per`` value, e.g. the agent id or vendor);
    ``amount`` is the action's amount for a ``sum`` limit or 1 for a ``count``.
    """

    id: str
    key: str
    window_seconds: int
    amount: Decimal


class ParameterViolation(msgspec.Struct, frozen=True):
    """An action breaking its type's ``parameters`` schema: where (RFC 6901 JSON pointer) and why."""

    pointer: str
    message: str


class Decision(msgspec.Struct, frozen=True, omit_defaults=True):
    """The outcome of evaluating a policy against one request.

    ``approvals_required`` and ``timeout_minutes`` are ``None`` unless the
    decision is ESCALATE. ``matched_rules`` lists every matched rule id in
    document order, rules in error included. The later fields are set only
    when the policy uses the feature: ``risk``, ``classification``,
    ``limits`` (every applicable limit), ``context`` (the history values the
    policy read, by path such as ``vendor.prior_count``) and ``violations``
    (reason ``invalid_parameters``: the gateway answers 422 and creates no action).
    """

    decision: str
    reason: str
    matched_rules: list[str]
    approvals_required: list[ApprovalRequirement] | None
    timeout_minutes: int | None
    checks: list[Check]
    risk: RiskAssessment | None = None
    classification: Classification | None = None
    limits: list[LimitStatus] | None = None
    context: dict[str, Any] | None = None
    violations: list[ParameterViolation] | None = None
