"""Evaluation of a compiled policy into a :class:`Decision`, with its explain trace.

Decisions are values: evaluation never raises for bad request data. In order:

(A) Scope: with ``EvaluationInput.scope`` set, an action outside it is DENY
    ``scope_violation:<action_type|asset|amount>`` (see :mod:`policy.scopes`).
(B) Action type: with ``action_types`` in the document, an undeclared type is
    DENY ``undeclared_action_type`` (unless ``undeclared_types: allow``), and
    an action breaking its type's ``parameters`` schema is DENY
    ``invalid_parameters`` with ``violations`` (the gateway answers 422).
(C) Classification (:mod:`policy.classification`), (D) the history context
    the gateway supplied, (E) risk (:mod:`policy.risk`): the roots
    ``classification``, ``context`` and ``risk`` that rules and limits read.
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
(G) Every limit whose ``match``/``when`` holds is judged against the usage
    the gateway supplied (:mod:`policy.limits`); a tripped limit counts like a
    matched rule with the limit's decision, after the rules; a limit in error
    like a rule in error.
(3) DENY overrides ESCALATE overrides ALLOW. The reason is that of the first
    matched rule (document order, then limits) with the winning decision.
(4) ESCALATE carries one approval requirement per matched ESCALATE rule or
    tripped ESCALATE limit, all of which must be met, and the smallest
    ``timeout_minutes`` among them.
(5) No rule matched: the document's ``default`` with reason ``no_rule_matched``,
    unless a tripped limit decides more strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policy.action_types import DEFAULT_AMOUNT_PATHS, ActionType, amount_problems, render_summary_for
from policy.cel_env import CelScope
from policy.classification import Classified, classify
from policy.decision import (
    ApprovalRequirement,
    Check,
    Classification,
    Decision,
    EvaluationInput,
    LimitClaim,
    LimitStatus,
    ParameterViolation,
    RiskAssessment,
    RoleQuota,
)
from policy.document import ALLOW, DENY, ESCALATE
from policy.limits import CompiledLimit, LimitError
from policy.matcher import EvaluationState, Matcher
from policy.risk import RiskModel
from policy.scopes import DEFAULT_FIELDS, ActionFields, check_scope
from policy.values import MISSING

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
UNDECLARED_ACTION_TYPE = "undeclared_action_type"
INVALID_PARAMETERS = "invalid_parameters"

# The values a condition reads from, indexed as policy.document.ROOTS:
# (action, agent, tenant, risk, classification, context).
Roots = tuple[Any, Any, Any, Any, Any, Any]
# The fields read in one evaluation, for explain on: the head of a trace line ("action.vendor ") ->
# (the field's value, that head and the value rendered: 'action.vendor "acme"'). Many conditions
# read the same few fields; each is read and rendered once per evaluation (never across evaluations).
Shown = dict[str, tuple[Any, str]]
# A compiled `match` condition: (roots, shown) -> (holds, trace line), for explain on.
# Raises RuleEvaluationError (with the trace line in `.condition`) when it cannot be evaluated.
Condition = Any  # Callable[[Roots, Shown], tuple[bool, str]]
# The same condition without its trace line, for explain off; raises like a Condition.
Test = Any  # Callable[[Roots], bool]

_DECIDED = {DENY: 3, ESCALATE: 2, ALLOW: 1}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    decision: str
    reason: str
    matcher: Matcher  # its `match` conditions and `when`
    requirement: ApprovalRequirement | None
    timeout_minutes: int


@dataclass(frozen=True, slots=True)
class Extensions:
    """The parts of a document beyond rules; every field empty for a document without them."""

    action_types: Mapping[str, ActionType] | None = None
    undeclared_allowed: bool = False
    classifications: Mapping[str, Classified] | None = None
    risk: RiskModel | None = None
    limits: tuple[CompiledLimit, ...] = ()
    # the action key paths limits sum: amounts whatever the action's type
    limit_amount_paths: tuple[tuple[str, ...], ...] = ()
    context_needs: frozenset[str] = frozenset()
    rules_read_risk_in_cel: bool = False


class CompiledPolicy:
    """A validated policy ready to evaluate. Immutable; safe to share between threads and tasks."""

    __slots__ = (
        "_condition_slots",
        "_context_keys",
        "_plain",
        "_scope",
        "context_needs",
        "default",
        "default_timeout_minutes",
        "extensions",
        "requested_approvals",
        "rules",
        "verdict_ttl_seconds",
    )

    def __init__(
        self,
        rules: tuple[CompiledRule, ...],
        default: str,
        verdict_ttl_seconds: int,
        default_timeout_minutes: int,
        scope: CelScope,
        extensions: Extensions | None = None,
        condition_slots: int = 0,
        requested_approvals: ApprovalRequirement | None = None,
    ) -> None:
        self.rules = rules
        #: ``defaults.requested_approvals``: who reviews a ``require_approval`` proposal (None: unnamed)
        self.requested_approvals = requested_approvals
        self._condition_slots = condition_slots
        self.default = default
        self.verdict_ttl_seconds = verdict_ttl_seconds
        self.default_timeout_minutes = default_timeout_minutes
        self._scope = scope
        self.extensions = extensions or Extensions()
        #: The history values the policy reads, as paths such as ``vendor.first_seen`` or
        #: ``agent.spend.24h``: the gateway queries only these for ``EvaluationInput.context``.
        self.context_needs = self.extensions.context_needs
        self._context_keys = tuple((path, tuple(path.split("."))) for path in sorted(self.context_needs))
        ext = self.extensions
        self._plain = ext.action_types is None and ext.classifications is None and ext.risk is None
        self._plain = self._plain and not ext.limits and not ext.context_needs

    # -- the gateway's entry points ------------------------------------------------------------

    def evaluate(self, request: EvaluationInput, *, explain: bool = True) -> Decision:
        """Decide on ``request`` (see the module docstring for the semantics). Never raises.

        With ``explain`` false no trace is built: ``checks`` is empty and the
        decision is otherwise the same, only faster.
        """
        checks: list[Check] | None = [] if explain else None
        if self._plain and request.scope is None:
            roots = (request.action, request.agent, request.tenant, None, None, None)
            state = EvaluationState(request, self._scope, roots, self._condition_slots)
            matches = self._run_rules(state, checks)
            return self._combine(matches, [], checks, {})
        return self._evaluate_extended(request, checks)

    def limit_claims(self, request: EvaluationInput) -> list[LimitClaim]:
        """The limits that apply to ``request``, each with its bucket key and the amount it adds.

        The gateway looks up each claim's window total (``usage``) before
        :meth:`evaluate`, and counts the claims of an action it keeps. Limits
        that apply but cannot be evaluated are left out here; :meth:`evaluate`
        denies them. Never raises.
        """
        if not self.extensions.limits:
            return []
        state = self._prepare(request, None)
        if isinstance(state, Decision):
            return []
        claims = []
        for limit in self.extensions.limits:
            applies, error = limit.matcher.run(state, None)
            if applies and error is None:
                try:
                    claims.append(limit.claim(state.roots))
                except LimitError:
                    continue
        return claims

    def check_parameters(self, action: Mapping[str, Any]) -> list[ParameterViolation]:
        """Every violation of ``action``'s type schema by JSON pointer (empty: valid or no schema)."""
        types = self.extensions.action_types
        declared = types.get(action.get("type")) if types is not None else None  # type: ignore[arg-type]
        return declared.check_parameters(action) if declared is not None else []

    def amount_problems(self, action: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(field, why)`` for each amount of ``action`` that is not an amount: its type's
        ``amount_field`` and ``amount_fields`` (``amount`` for an undeclared type) and every
        limit's ``sum`` field, when present (see :func:`policy.action_types.amount_problems`).
        The gateway refuses such an action before evaluating it. Never raises."""
        types = self.extensions.action_types
        kind = action.get("type")
        declared = types.get(kind) if types is not None and isinstance(kind, str) else None
        paths = declared.amount_paths if declared is not None else DEFAULT_AMOUNT_PATHS
        extra = tuple(p for p in self.extensions.limit_amount_paths if p not in paths)
        allow_negative = declared is not None and declared.allow_negative
        return amount_problems(action, paths + extra, allow_negative=allow_negative)

    def action_fields(self, action_type: Any) -> ActionFields:
        """Where actions of ``action_type`` keep their amount and asset (for :func:`policy.scopes.check_scope`)."""
        types = self.extensions.action_types
        declared = types.get(action_type) if types is not None and isinstance(action_type, str) else None
        return declared.fields if declared is not None else DEFAULT_FIELDS

    def action_rails(self, action_type: Any) -> tuple[str, ...] | None:
        """The rails actions of ``action_type`` may be executed on (``action_types.<type>.rails``);
        ``None`` when the policy does not say (any rail the tenant configured)."""
        types = self.extensions.action_types
        declared = types.get(action_type) if types is not None and isinstance(action_type, str) else None
        return declared.rails if declared is not None else None

    def render_summary(self, action: Mapping[str, Any]) -> str:
        """The approver's sentence for ``action`` (its type's template, or a default one). Never raises."""
        types = self.extensions.action_types
        kind = action.get("type")
        declared = types.get(kind) if types is not None and isinstance(kind, str) else None
        return render_summary_for(declared, action)

    # -- evaluation ---------------------------------------------------------------------------

    def _prepare(self, request: EvaluationInput, checks: list[Check] | None) -> EvaluationState | Decision:
        """Steps (A) to (E): a Decision if the request stops there, else the state rules run in."""
        ext = self.extensions
        action = request.action
        kind = action.get("type") if isinstance(action, dict) else None
        declared = (
            ext.action_types.get(kind) if ext.action_types is not None and isinstance(kind, str) else None
        )
        if request.scope is not None:  # (A)
            violation = check_scope(request.scope, action, declared.fields if declared else DEFAULT_FIELDS)
            if checks is not None:
                line = f"scope: {violation}" if violation else "scope: within"
                checks.append(Check("scope", violation is not None, None, [line], kind="scope"))
            if violation:
                return Decision(DENY, violation, [], None, None, checks or [])
        if ext.action_types is not None:  # (B)
            if declared is None:
                if checks is not None:
                    line = f"action.type {kind!r} declared: {'no' if kind is not None else 'missing'}"
                    checks.append(
                        Check("action_type", not ext.undeclared_allowed, None, [line], kind="action_type")
                    )
                if not ext.undeclared_allowed:
                    return Decision(DENY, UNDECLARED_ACTION_TYPE, [], None, None, checks or [])
            else:
                violations = declared.check_parameters(action)
                if checks is not None:
                    lines = [f"{v.pointer or '/'}: {v.message}" for v in violations] or ["parameters: valid"]
                    checks.append(Check(declared.name, bool(violations), None, lines, kind="action_type"))
                if violations:
                    return Decision(
                        DENY, INVALID_PARAMETERS, [], None, None, checks or [], violations=violations
                    )
        classified = classify(ext.classifications, action) if ext.classifications is not None else None  # (C)
        context = request.context  # (D)
        roots = (
            action,
            request.agent,
            request.tenant,
            None,
            classified[1] if classified is not None else None,
            context if context is not None else {},
        )
        state = EvaluationState(request, self._scope, roots, self._condition_slots)
        state.classification = classified
        return state

    def _evaluate_extended(self, request: EvaluationInput, checks: list[Check] | None) -> Decision:
        ext = self.extensions
        prepared = self._prepare(request, checks)
        if isinstance(prepared, Decision):
            return prepared
        state = prepared
        classified: Classified | None = state.classification
        risk: RiskAssessment | None = None
        if ext.risk is not None:  # (E)
            modifier = classified[2] if classified is not None else Decimal(1)
            risk, risk_root = ext.risk.assess(state, modifier, checks)
            state.set_risk(risk_root)
            if ext.rules_read_risk_in_cel:
                state.forget_context()
        matches = self._run_rules(state, checks)  # (1)
        limits, limit_outcomes = self._run_limits(state, checks) if ext.limits else (None, [])  # (G)
        extra: dict[str, Any] = {}
        if risk is not None:
            extra["risk"] = risk
        if classified is not None:
            extra["classification"] = classified[0]
        if limits is not None:
            extra["limits"] = limits
        if self._context_keys:
            extra["context"] = _context_used(self._context_keys, state.roots[5])
        return self._combine(matches, limit_outcomes, checks, extra)

    def _run_rules(
        self, state: EvaluationState, checks: list[Check] | None
    ) -> list[tuple[CompiledRule, str | None]]:
        """Every rule in document order (1): the matched ones with their error, if any."""
        matches: list[tuple[CompiledRule, str | None]] = []  # (rule, error)
        for rule in self.rules:
            trace: list[str] | None = None if checks is None else []
            matched, error = rule.matcher.run(state, trace)
            if checks is not None:
                checks.append(Check(rule.id, matched, error if matched else None, trace))
            if matched:
                matches.append((rule, error))
        return matches

    def _run_limits(
        self, state: EvaluationState, checks: list[Check] | None
    ) -> tuple[list[LimitStatus], list[tuple[str, str, str, CompiledLimit]]]:
        """Step (G): the status of every applicable limit, and the outcomes of the tripped or failed ones."""
        statuses = []
        outcomes = []  # (decision, reason, id, limit)
        usage = state.request.usage
        for limit in self.extensions.limits:
            trace: list[str] | None = None if checks is None else []
            applies, error = limit.matcher.run(state, trace)
            status = None
            if applies and error is None:
                try:
                    status = limit.judge(limit.claim(state.roots), usage)
                except LimitError as failure:
                    error = str(failure)
            if status is not None:
                statuses.append(status)
                if status.tripped:
                    outcomes.append((limit.decision, limit.reason, limit.id, limit))
            elif applies:
                outcomes.append((DENY, POLICY_ERROR_PREFIX + limit.id, limit.id, limit))
            if checks is not None and trace is not None:
                if status is not None:
                    trace.append(limit.describe(status))
                elif applies:
                    trace.append(f"{limit.id}: error: {error}")
                tripped = status.tripped if status is not None else applies
                checks.append(Check(limit.id, tripped, error if applies else None, trace, kind="limit"))
        return statuses, outcomes

    def _combine(
        self,
        matches: list[tuple[CompiledRule, str | None]],
        limit_outcomes: list[tuple[str, str, str, CompiledLimit]],
        checks: list[Check] | None,
        extra: dict[str, Any],
    ) -> Decision:
        """Steps (2) to (5); ``extra`` holds the decision's risk, classification, limits and context."""
        trace = checks if checks is not None else []
        matched_rules = [rule.id for rule, _ in matches]
        # (2) a rule in error is a DENY; (3) the strongest decision, first reason in document order
        best = 0
        reason = NO_RULE_MATCHED
        escalations: list[tuple[ApprovalRequirement | None, int]] = []
        for rule, error in matches:
            decision = DENY if error else rule.decision
            rank = _DECIDED[decision]
            if rank > best:
                best, reason = rank, POLICY_ERROR_PREFIX + rule.id if error else rule.reason
            if decision == ESCALATE:
                escalations.append((rule.requirement, rule.timeout_minutes))
        for decision, limit_reason, _, limit in limit_outcomes:
            rank = _DECIDED[decision]
            if rank > best:
                best, reason = rank, limit_reason
            if decision == ESCALATE:
                escalations.append((limit.requirement, limit.timeout_minutes))
        if best == 0:  # (5) validation admits only ALLOW or DENY as the default
            return Decision(self.default, NO_RULE_MATCHED, matched_rules, None, None, trace, **extra)
        if not matches and _DECIDED[self.default] > best:
            return Decision(self.default, NO_RULE_MATCHED, matched_rules, None, None, trace, **extra)
        if best == 3:
            return Decision(DENY, reason, matched_rules, None, None, trace, **extra)
        if best == 1:
            return Decision(ALLOW, reason, matched_rules, None, None, trace, **extra)
        approvals = [requirement for requirement, _ in escalations if requirement is not None]  # (4)
        timeout = min(timeout for _, timeout in escalations)
        return Decision(ESCALATE, reason, matched_rules, approvals, timeout, trace, **extra)


def _context_used(paths: tuple[tuple[str, tuple[str, ...]], ...], context: Any) -> dict[str, Any]:
    """The supplied values of the context paths the policy reads (absent ones left out).

    ``paths`` holds each path the policy reads, in sorted order, with its keys.
    """
    used = {}
    for path, keys in paths:
        value: Any = context
        for key in keys:
            value = value.get(key, MISSING) if isinstance(value, Mapping) else MISSING
        if value is not MISSING:
            used[path] = value
    return used


__all__ += ["Classification", "LimitClaim", "LimitStatus", "ParameterViolation", "RiskAssessment"]
