"""Compilation of a validated policy document into closures.

Everything that does not depend on the request is done here, once: field
paths are split, decimal operands parsed, ``in`` lists turned into sets, CEL
compiled and the trace text around each condition pre-rendered, so that
evaluating a condition is a dict lookup, a comparison and one string join.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from policy.action_types import ActionType, compile_action_type
from policy.cel_env import CelScope, Expression, compile_expression
from policy.classification import compile_classifications
from policy.decimals import explain_not_decimal, parse_decimal
from policy.document import (
    DEFAULT_DECISION,
    ESCALATE,
    MEMBERSHIP_OPERATORS,
    ORDERING_OPERATORS,
    ROOTS,
    TIMEOUT_MINUTES,
    VERDICT_TTL_SECONDS,
    FieldPath,
    json_equal,
    parse_field_path,
    parse_window,
)
from policy.errors import PolicyInvalid, Problem, RuleEvaluationError
from policy.evaluate import (
    ApprovalRequirement,
    CompiledPolicy,
    CompiledRule,
    Condition,
    Extensions,
    RoleQuota,
    Roots,
    Shown,
    Test,
)
from policy.limits import LIMIT_EXCEEDED, CompiledLimit
from policy.matcher import Matcher
from policy.native_when import compile_native_when
from policy.requested import APPROVAL_REQUESTED
from policy.risk import DEFAULT_BANDS, RiskFactor, RiskModel
from policy.scopes import read_field
from policy.values import MISSING, cached_decimal, render_value

__all__ = ["compile_conditions", "compile_policy", "render_value"]

_ORDERINGS: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def compile_policy(document: dict[str, Any]) -> CompiledPolicy:
    """Compile a document that :func:`policy.load.validate_document` accepted.

    Raises:
        PolicyInvalid: a ``when`` does not compile (only for a document that
            skipped validation).
    """
    lists = document.get("lists", {})
    expressions: list[Expression] = []
    context_needs: set[str] = set()
    slots: dict[tuple[str, ...], int] = {}  # one memo slot per distinct condition of the document

    def matcher(spec: dict[str, Any], path: str, label: str) -> Matcher:
        when = None
        if "when" in spec:
            when, problems = compile_expression(spec["when"], lists)
            if when is None or problems:
                raise PolicyInvalid([Problem(path=f"{path}.when", rule=label, message=m) for m in problems])
            when = when._replace(native=compile_native_when(when.source))
            expressions.append(when)
            context_needs.update(when.context_paths)
        match = spec.get("match", {})
        context_needs.update(
            field.removeprefix("context.") for field in match if field.startswith("context.")
        )
        tests, conditions = compile_conditions(match, lists, f"{path}.match", label, slots)
        return Matcher(tests, conditions, when)

    rules = []
    for index, rule in enumerate(document["rules"]):
        compiled = matcher(rule, f"rules[{index}]", rule["id"])
        rules.append(_compile_rule(rule, compiled))
    rule_expressions = list(expressions)
    risk = None
    if "risk" in document:
        section = document["risk"]
        factors = tuple(
            RiskFactor(factor["name"], factor["score"], matcher(factor, f"risk.factors[{i}]", factor["name"]))
            for i, factor in enumerate(section.get("factors", []))
        )
        bands = {**DEFAULT_BANDS, **section.get("bands", {})}
        risk = RiskModel(factors, bands["medium"], bands["high"], bands["critical"])
    action_types = None
    if "action_types" in document:
        action_types = {
            name: compile_action_type(name, spec) for name, spec in document["action_types"].items()
        }
    undeclared_allowed = document.get("undeclared_types", "deny") == "allow"
    limits = tuple(
        _compile_limit(limit, matcher(limit, f"limits[{i}]", limit["id"]), action_types)
        for i, limit in enumerate(document.get("limits", []))
    )
    classifications = None
    if "classifications" in document:
        classifications = compile_classifications(document["classifications"])
    extensions = Extensions(
        action_types=action_types,
        undeclared_allowed=undeclared_allowed,
        classifications=classifications,
        risk=risk,
        limits=limits,
        limit_amount_paths=tuple(
            dict.fromkeys(
                parse_field_path(limit["sum"]).keys  # type: ignore[union-attr]
                for limit in document.get("limits", [])
                if "sum" in limit
            )
        ),
        context_needs=frozenset(context_needs),
        rules_read_risk_in_cel=any("risk" in expression.reads for expression in rule_expressions),
    )
    return CompiledPolicy(
        rules=tuple(rules),
        default=document.get("default", DEFAULT_DECISION),
        verdict_ttl_seconds=document.get("verdict_ttl_seconds", VERDICT_TTL_SECONDS[2]),
        default_timeout_minutes=TIMEOUT_MINUTES[2],
        scope=CelScope(expressions, lists),
        extensions=extensions,
        condition_slots=len(slots),
        requested_approvals=_requested_approvals(document),
    )


def _requested_approvals(document: dict[str, Any]) -> ApprovalRequirement | None:
    approvals = document.get("defaults", {}).get("requested_approvals")
    return _requirement(APPROVAL_REQUESTED, approvals) if approvals is not None else None


def _compile_rule(rule: dict[str, Any], matcher: Matcher) -> CompiledRule:
    approvals = rule.get("approvals", {})
    escalates = rule["decision"] == ESCALATE
    return CompiledRule(
        id=rule["id"],
        decision=rule["decision"],
        reason=rule.get("reason", rule["id"]),
        matcher=matcher,
        requirement=_requirement(rule["id"], approvals) if escalates else None,
        timeout_minutes=rule.get("timeout_minutes", TIMEOUT_MINUTES[2]) if escalates else 0,
    )


def _compile_limit(
    limit: dict[str, Any], matcher: Matcher, action_types: dict[str, ActionType] | None
) -> CompiledLimit:
    per = limit["per"]
    if per == "asset":

        def read_per(roots: Roots) -> Any:
            action = roots[0]
            kind = action.get("type")
            declared = action_types.get(kind) if action_types is not None and isinstance(kind, str) else None
            value = read_field(action, declared.fields.asset if declared is not None else ("asset",))
            return MISSING if value is _ABSENT else value

    else:
        read_per = _make_getter(parse_field_path(PER_PATHS.get(per, per)))  # type: ignore[arg-type]
    read_amount = None
    if "sum" in limit:
        read_amount = _make_getter(parse_field_path(limit["sum"]))  # type: ignore[arg-type]
    escalates = limit["decision"] == ESCALATE
    return CompiledLimit(
        id=limit["id"],
        per=per,
        window=limit["window"],
        window_seconds=parse_window(limit["window"]) or 0,
        read_per=read_per,
        read_amount=read_amount,
        max=Decimal(str(limit["max"])),
        max_text=format(Decimal(str(limit["max"])), "f"),
        decision=limit["decision"],
        reason=limit.get("reason", LIMIT_EXCEEDED + limit["id"]),
        requirement=_requirement(limit["id"], limit["approvals"]) if escalates else None,
        timeout_minutes=limit.get("timeout_minutes", TIMEOUT_MINUTES[2]) if escalates else 0,
        matcher=matcher,
    )


PER_PATHS = {"agent": "agent.id", "tenant": "tenant.id", "vendor": "action.vendor"}
_ABSENT = read_field({}, ("x",))


def _requirement(rule_id: str, approvals: dict[str, Any]) -> ApprovalRequirement:
    if "all_of" in approvals:
        quotas = tuple(RoleQuota(quota["role"], quota["min"]) for quota in approvals["all_of"])
        return ApprovalRequirement(rule_id, all_of=quotas)
    return ApprovalRequirement(rule_id, threshold=approvals["threshold"], roles=tuple(approvals["roles"]))


_SYMBOLS = {
    "eq": "==",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
}
MATCHED, NOT_MATCHED = ": matched", ": not matched"
_RISK_ROOT = ROOTS.index("risk")


def compile_conditions(
    match: dict[str, Any],
    lists: dict[str, list[Any]],
    where: str = "match",
    rule: str | None = None,
    slots: dict[tuple[str, ...], int] | None = None,
) -> tuple[tuple[tuple[int, Test], ...], tuple[tuple[int, Condition], ...]]:
    """Compile a ``match`` mapping into fast tests (explain off) and tracing conditions (explain on).

    Each comes with its memo slot (see :class:`policy.matcher.EvaluationState`): conditions
    written the same way (same field, operator and operand) share a slot, taken from ``slots``,
    the document's table, so that one evaluation runs each of them once. A condition on the
    ``risk`` root gets a slot of its own: risk is set midway through an evaluation.
    """
    slots = {} if slots is None else slots
    tests, conditions = [], []
    for path_text, operators in match.items():
        field = parse_field_path(path_text)
        if field is None:  # unreachable for a validated document
            raise PolicyInvalid(
                [Problem(path=f"{where}.{path_text}", rule=rule, message="unknown field path")]
            )
        for operator_name, operand in operators.items():
            test, condition = _compile_condition(field, operator_name, operand, lists)
            key = (field.text, operator_name, type(operand).__name__, repr(operand))
            if field.root == _RISK_ROOT:
                key = ("risk", str(len(slots)))  # never shared
            slot = slots.setdefault(key, len(slots))
            tests.append((slot, test))
            conditions.append((slot, condition))
    return tuple(tests), tuple(conditions)


def _compile_condition(
    field: FieldPath, name: str, operand: Any, lists: dict[str, list[Any]]
) -> tuple[Test, Condition]:
    """Return ``(test, condition)``: the same check without and with its trace line.

    Trace lines show the compared values: ``action.amount 7800.00 > 5000: matched``.
    """
    get = _make_getter(field)
    head = field.text + " "
    if name in MEMBERSHIP_OPERATORS and isinstance(operand, str):
        items, operand_text = lists[operand], operand
    else:
        items, operand_text = operand, render_value(operand)
    if name in ORDERING_OPERATORS:
        return _compile_ordering(get, head, name, operand)

    if name == "exists":
        wanted = operand
        tail = " exists" if wanted else " absent"
        tail_true, tail_false = tail + MATCHED, tail + NOT_MATCHED

        def test_exists(roots: Roots) -> bool:
            return (get(roots) is not MISSING) is wanted

        def explain_exists(roots: Roots, shown: Shown) -> tuple[bool, str]:
            seen = shown.get(head)
            if seen is None:  # the field's first condition in this evaluation
                value = get(roots)
                seen = shown[head] = (value, head + render_value(value))
            holds = (seen[0] is not MISSING) is wanted
            return holds, seen[1] + (tail_true if holds else tail_false)

        return test_exists, explain_exists

    # eq/ne/in/not_in: exact JSON membership (eq as a one-item list). Strings and integers, nearly
    # every request value, are looked up in a set here rather than through another call; type()
    # rather than isinstance keeps True out of {1}. A missing field makes the condition false,
    # whatever the operator.
    strings, integers, others = _split_members(items if name in MEMBERSHIP_OPERATORS else [operand])
    negate = name in ("ne", "not_in")
    middle = f" {_SYMBOLS[name]} {operand_text}"
    tail_true, tail_false = middle + MATCHED, middle + NOT_MATCHED

    def test(roots: Roots) -> bool:
        value = get(roots)
        value_type = type(value)
        if value_type is str:
            return (value in strings) is not negate
        if value_type is int:
            return (value in integers) is not negate
        return value is not MISSING and any(json_equal(value, item) for item in others) is not negate

    def compare(roots: Roots, shown: Shown) -> tuple[bool, str]:
        seen = shown.get(head)
        if seen is None:  # the field's first condition in this evaluation (a missing one shows <missing>)
            value = get(roots)
            seen = shown[head] = (value, head + render_value(value))
        value = seen[0]
        value_type = type(value)
        if value_type is str:
            holds = (value in strings) is not negate
        elif value_type is int:
            holds = (value in integers) is not negate
        else:
            holds = value is not MISSING and any(json_equal(value, item) for item in others) is not negate
        return holds, seen[1] + (tail_true if holds else tail_false)

    return test, compare


def _compile_ordering(
    get: Callable[[Roots], Any], head: str, name: str, operand: Any
) -> tuple[Test, Condition]:
    bound = parse_decimal(operand)
    if bound is None:  # unreachable for a validated document
        raise PolicyInvalid(
            [Problem(path=head.strip(), message=f"{name} operand {explain_not_decimal(operand)}")]
        )
    ordering = _ORDERINGS[name]
    middle = f" {_SYMBOLS[name]} {operand}"  # a decimal string or an integer, as written
    tail_true, tail_false = middle + MATCHED, middle + NOT_MATCHED

    def fail(value: Any) -> RuleEvaluationError:
        if value is MISSING:
            problem = f"is missing; {name} needs a decimal string or integer"
        else:
            problem = explain_not_decimal(value)
        return RuleEvaluationError(head + problem, f"{head}{render_value(value)}{middle}: error: {problem}")

    def test(roots: Roots) -> bool:
        value = get(roots)
        number = cached_decimal(value)
        if number is None:
            raise fail(value)
        return ordering(number, bound)

    def order(roots: Roots, shown: Shown) -> tuple[bool, str]:
        value = get(roots)
        number = cached_decimal(value)
        if number is None:
            raise fail(value)
        text = value if type(value) is str and len(value) <= 80 else render_value(value)
        if ordering(number, bound):
            return True, head + text + tail_true
        return False, head + text + tail_false

    return test, order


def _make_getter(field: FieldPath) -> Callable[[Roots], Any]:
    root, keys = field.root, field.keys
    if len(keys) == 1:
        key = keys[0]

        def get_one(roots: Roots) -> Any:
            container = roots[root]
            return container.get(key, MISSING) if isinstance(container, dict) else MISSING

        return get_one

    def get_nested(roots: Roots) -> Any:
        value = roots[root]
        for key in keys:
            if not isinstance(value, dict):
                return MISSING
            value = value.get(key, MISSING)
        return value

    return get_nested


def _split_members(items: list[Any]) -> tuple[frozenset[str], frozenset[int], tuple[Any, ...]]:
    """The strings, the integers (never bools) and the other JSON values of ``items``."""
    strings = frozenset(item for item in items if type(item) is str)
    integers = frozenset(item for item in items if type(item) is int)
    others = tuple(item for item in items if type(item) is not str and type(item) is not int)
    return strings, integers, others
