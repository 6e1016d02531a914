"""Evaluation of a compiled policy into a :class:`Decision`, with its explain trace.

Decisions are values: evaluation never raises for bad request data.

(1) Every rule is evaluated, in document order. A rule *matches* when all its
    ``match`` conditions and its ``when`` hold. They combine like CEL's ``&&``:
    a condition that is false makes the rule not match even if another
    condition failed to evaluate; otherwise any failure (missing field for an
    ordering operator, a value that is not a decimal, a CEL error, a ``when``
    that is not a bool) makes the rule an *error*. The first false condition
    stops the rule (the trace then lists only the conditions evaluated), and
    ``when`` runs only if no ``match`` condition was false.
(2) A rule in error counts as a matched DENY with reason ``policy_error:<id>``;
    it never allows (DESIGN.md, invariant 1).
(3) DENY overrides ESCALATE overrides ALLOW. The reason is that of the first
    matched rule (document order) with the winning decision.
(4) ESCALATE carries one approval requirement per matched ESCALATE rule, all
    of which must be met, and the smallest ``timeout_minutes`` among them.
(5) Nothing matched: the document's ``default`` with reason ``no_rule_matched``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from policy.cel_env import CelScope, Expression, run_expression
from policy.document import ALLOW, DENY, ESCALATE
from policy.errors import RuleEvaluationError

__all__ = [
    "ApprovalRequirement",
    "Check",
    "CompiledPolicy",
    "CompiledRule",
    "Decision",
    "EvaluationInput",
    "RoleQuota",
]

NO_RULE_MATCHED = "no_rule_matched"
POLICY_ERROR_PREFIX = "policy_error:"

# A compiled `match` condition: (action, agent, tenant) -> (holds, trace line).
# Raises RuleEvaluationError (with the trace line in `.condition`) when it cannot be evaluated.
Condition = Callable[[tuple[Any, Any, Any]], tuple[bool, str]]


@dataclass(frozen=True, slots=True)
class EvaluationInput:
    """What a policy decides on. ``agent`` and ``tenant`` hold ``{"id", "name"}``; ``now`` is aware UTC."""

    action: dict[str, Any]
    agent: dict[str, Any]
    tenant: dict[str, Any]
    now: datetime.datetime


class RoleQuota(msgspec.Struct, frozen=True):
    """At least ``min`` distinct signers approving in ``role``."""

    role: str
    min: int


class ApprovalRequirement(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one matched ESCALATE rule asks for (see :mod:`policy.approvals` for the counting).

    Either ``threshold`` distinct signers approving in any of ``roles``, or every quota of
    ``all_of``; exactly one of the two forms is set.
    """

    rule: str
    threshold: int | None = None
    roles: tuple[str, ...] | None = None
    all_of: tuple[RoleQuota, ...] | None = None


class Check(msgspec.Struct, frozen=True):
    """How one rule fared: the explain trace, one per rule in document order.

    ``conditions`` holds a line per condition evaluated, such as
    ``action.amount "7800.00" gt "5000": true`` or ``when: false``.
    ``error`` is set when the rule matched as an evaluation error.
    """

    rule: str
    matched: bool
    error: str | None
    conditions: list[str]


class Decision(msgspec.Struct, frozen=True):
    """The outcome of evaluating a policy against one request.

    ``approvals_required`` and ``timeout_minutes`` are ``None`` unless the
    decision is ESCALATE. ``matched_rules`` lists every matched rule id in
    document order, rules in error included.
    """

    decision: str
    reason: str
    matched_rules: list[str]
    approvals_required: list[ApprovalRequirement] | None
    timeout_minutes: int | None
    checks: list[Check]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    decision: str
    reason: str
    conditions: tuple[Condition, ...]
    when: Expression | None
    requirement: ApprovalRequirement | None
    timeout_minutes: int


class CompiledPolicy:
    """A validated policy ready to evaluate. Immutable; safe to share between threads and tasks."""

    __slots__ = ("_scope", "default", "default_timeout_minutes", "rules", "verdict_ttl_seconds")

    def __init__(
        self,
        rules: tuple[CompiledRule, ...],
        default: str,
        verdict_ttl_seconds: int,
        default_timeout_minutes: int,
        scope: CelScope,
    ) -> None:
        self.rules = rules
        self.default = default
        self.verdict_ttl_seconds = verdict_ttl_seconds
        self.default_timeout_minutes = default_timeout_minutes
        self._scope = scope

    def evaluate(self, request: EvaluationInput) -> Decision:
        """Decide on ``request`` (see the module docstring for the semantics). Never raises."""
        roots = (request.action, request.agent, request.tenant)
        context: Any = None  # built on the first `when`; a RuleEvaluationError if building failed
        checks = []
        matches: list[tuple[CompiledRule, str | None]] = []  # (rule, error)
        for rule in self.rules:
            trace = []
            error = None
            matched = True
            for condition in rule.conditions:  # (1)
                try:
                    holds, line = condition(roots)
                except RuleEvaluationError as failure:
                    trace.append(failure.condition)
                    error = error or failure.message
                    continue
                trace.append(line)
                if not holds:
                    matched = False
                    break
            if matched and rule.when is not None:
                if context is None:
                    context = self._build_context(request)
                outcome = _check_when(rule.when, context)
                if type(outcome) is bool:
                    trace.append("when: true" if outcome else "when: false")
                    matched = outcome
                else:
                    trace.append(f"when: error: {outcome}")
                    error = error or outcome
            checks.append(Check(rule.id, matched, error if matched else None, trace))
            if matched:
                matches.append((rule, error))
        return self._combine(matches, checks)

    def _build_context(self, request: EvaluationInput) -> Any:
        try:
            return self._scope.build_context(request.action, request.agent, request.tenant, request.now)
        except RuleEvaluationError as failure:
            return failure

    def _combine(self, matches: list[tuple[CompiledRule, str | None]], checks: list[Check]) -> Decision:
        if not matches:  # (5) validation admits only ALLOW or DENY as the default
            return Decision(self.default, NO_RULE_MATCHED, [], None, None, checks)
        outcomes = [  # (2)
            (rule, DENY, POLICY_ERROR_PREFIX + rule.id) if error else (rule, rule.decision, rule.reason)
            for rule, error in matches
        ]
        decided = {decision for _, decision, _ in outcomes}
        winner = DENY if DENY in decided else ESCALATE if ESCALATE in decided else ALLOW  # (3)
        reason = next(reason for _, decision, reason in outcomes if decision == winner)
        matched_rules = [rule.id for rule, _ in matches]
        if winner != ESCALATE:
            return Decision(winner, reason, matched_rules, None, None, checks)
        escalations = [rule for rule, decision, _ in outcomes if decision == ESCALATE]  # (4)
        approvals = [rule.requirement for rule in escalations if rule.requirement is not None]
        timeout = min(rule.timeout_minutes for rule in escalations)
        return Decision(winner, reason, matched_rules, approvals, timeout, checks)


def _check_when(expression: Expression, context: Any) -> bool | str:
    """Run a ``when``: its bool result, or the message saying why it failed."""
    if isinstance(context, RuleEvaluationError):
        return context.message
    try:
        return run_expression(expression, context)
    except RuleEvaluationError as failure:
        return failure.message
