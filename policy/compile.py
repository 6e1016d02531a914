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

import msgspec

from policy.cel_env import CelScope, Expression, compile_expression
from policy.decimals import explain_not_decimal, parse_decimal
from policy.document import (
    DEFAULT_DECISION,
    ESCALATE,
    MEMBERSHIP_OPERATORS,
    ORDERING_OPERATORS,
    TIMEOUT_MINUTES,
    VERDICT_TTL_SECONDS,
    FieldPath,
    json_equal,
    parse_field_path,
)
from policy.errors import PolicyInvalid, Problem, RuleEvaluationError
from policy.evaluate import ApprovalRequirement, CompiledPolicy, CompiledRule, Condition, RoleQuota

__all__ = ["compile_policy", "render_value"]

_MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
_ORDERINGS: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_encode = msgspec.json.encode


def compile_policy(document: dict[str, Any]) -> CompiledPolicy:
    """Compile a document that :func:`policy.load.validate_document` accepted.

    Raises:
        PolicyInvalid: a ``when`` does not compile (only for a document that
            skipped validation).
    """
    lists = document.get("lists", {})
    rules = []
    expressions = []
    for index, rule in enumerate(document["rules"]):
        when = None
        if "when" in rule:
            when, problems = compile_expression(rule["when"], lists)
            if when is None or problems:
                path = f"rules[{index}].when"
                raise PolicyInvalid([Problem(path=path, rule=rule["id"], message=m) for m in problems])
            expressions.append(when)
        rules.append(_compile_rule(rule, when, lists))
    return CompiledPolicy(
        rules=tuple(rules),
        default=document.get("default", DEFAULT_DECISION),
        verdict_ttl_seconds=document.get("verdict_ttl_seconds", VERDICT_TTL_SECONDS[2]),
        default_timeout_minutes=TIMEOUT_MINUTES[2],
        scope=CelScope(expressions, lists),
    )


def _compile_rule(rule: dict[str, Any], when: Expression | None, lists: dict[str, list[Any]]) -> CompiledRule:
    conditions = []
    for path_text, operators in rule.get("match", {}).items():
        field = parse_field_path(path_text)
        if field is None:  # unreachable for a validated document
            raise PolicyInvalid([Problem(path=path_text, rule=rule["id"], message="unknown field path")])
        for operator_name, operand in operators.items():
            conditions.append(_compile_condition(field, operator_name, operand, lists))
    approvals = rule.get("approvals", {})
    escalates = rule["decision"] == ESCALATE
    return CompiledRule(
        id=rule["id"],
        decision=rule["decision"],
        reason=rule.get("reason", rule["id"]),
        conditions=tuple(conditions),
        when=when,
        requirement=_requirement(rule["id"], approvals) if escalates else None,
        timeout_minutes=rule.get("timeout_minutes", TIMEOUT_MINUTES[2]) if escalates else 0,
    )


def _requirement(rule_id: str, approvals: dict[str, Any]) -> ApprovalRequirement:
    if "all_of" in approvals:
        quotas = tuple(RoleQuota(quota["role"], quota["min"]) for quota in approvals["all_of"])
        return ApprovalRequirement(rule_id, all_of=quotas)
    return ApprovalRequirement(rule_id, threshold=approvals["threshold"], roles=tuple(approvals["roles"]))


def _compile_condition(field: FieldPath, name: str, operand: Any, lists: dict[str, list[Any]]) -> Condition:
    get = _make_getter(field)
    head = field.text + " "
    if name in MEMBERSHIP_OPERATORS and isinstance(operand, str):
        items, operand_text = lists[operand], operand
    else:
        items, operand_text = operand, render_value(operand)
    if name in ORDERING_OPERATORS:
        return _compile_ordering(get, head, name, operand, operand_text)
    tail_true, tail_false = f" {name} {operand_text}: true", f" {name} {operand_text}: false"

    if name == "exists":
        wanted = operand

        def exists(roots: tuple[Any, Any, Any]) -> tuple[bool, str]:
            value = get(roots)
            holds = (value is not _MISSING) is wanted
            return holds, head + render_value(value) + (tail_true if holds else tail_false)

        return exists

    test = _make_membership(items) if name in MEMBERSHIP_OPERATORS else _make_equality(operand)
    negate = name in ("ne", "not_in")

    # eq/ne/in/not_in: a missing field makes the condition false, whatever the operator.
    def compare(roots: tuple[Any, Any, Any]) -> tuple[bool, str]:
        value = get(roots)
        if value is _MISSING:
            return False, head + "<missing>" + tail_false
        holds = test(value) is not negate
        return holds, head + render_value(value) + (tail_true if holds else tail_false)

    return compare


def _compile_ordering(
    get: Callable[[tuple[Any, Any, Any]], Any], head: str, name: str, operand: Any, operand_text: str
) -> Condition:
    bound = parse_decimal(operand)
    if bound is None:  # unreachable for a validated document
        raise PolicyInvalid(
            [Problem(path=head.strip(), message=f"{name} operand {explain_not_decimal(operand)}")]
        )
    ordering = _ORDERINGS[name]
    tail_true, tail_false = f" {name} {operand_text}: true", f" {name} {operand_text}: false"

    def order(roots: tuple[Any, Any, Any]) -> tuple[bool, str]:
        value = get(roots)
        number = parse_decimal(value)
        if number is None:
            if value is _MISSING:
                problem = f"is missing; {name} needs a decimal string or integer"
            else:
                problem = explain_not_decimal(value)
            line = f"{head}{render_value(value)} {name} {operand_text}: error: {problem}"
            raise RuleEvaluationError(head + problem, line)
        if ordering(number, bound):
            return True, head + render_value(value) + tail_true
        return False, head + render_value(value) + tail_false

    return order


def _make_getter(field: FieldPath) -> Callable[[tuple[Any, Any, Any]], Any]:
    root, keys = field.root, field.keys
    if len(keys) == 1:
        key = keys[0]

        def get_one(roots: tuple[Any, Any, Any]) -> Any:
            container = roots[root]
            return container.get(key, _MISSING) if isinstance(container, dict) else _MISSING

        return get_one

    def get_nested(roots: tuple[Any, Any, Any]) -> Any:
        value = roots[root]
        for key in keys:
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(key, _MISSING)
        return value

    return get_nested


def _make_equality(operand: Any) -> Callable[[Any], bool]:
    operand_type = type(operand)
    if operand_type is str or operand_type is int:
        return lambda value: type(value) is operand_type and value == operand
    if operand is None or operand_type is bool:
        return lambda value: value is operand
    return lambda value: json_equal(value, operand)


def _make_membership(items: list[Any]) -> Callable[[Any], bool]:
    """Exact JSON membership: strings and integers by set lookup, anything else by :func:`json_equal`."""
    strings = frozenset(item for item in items if type(item) is str)
    integers = frozenset(item for item in items if type(item) is int)
    others = tuple(item for item in items if type(item) is not str and type(item) is not int)

    def contains(value: Any) -> bool:
        value_type = type(value)
        if value_type is str:
            return value in strings
        if value_type is int:
            return value in integers
        return any(json_equal(value, item) for item in others)

    return contains


def render_value(value: Any) -> str:
    """Render a value for the explain trace: JSON cut at 80 characters; ``<missing>`` when absent.

    Large or deep containers render as ``[...]``/``{...}``, so the cost stays small whatever the request.
    """
    if type(value) is str:
        value = value[:80]
    elif value is _MISSING:
        return "<missing>"
    elif isinstance(value, dict | list) and not _is_small(value):
        return "[...]" if isinstance(value, list) else "{...}"
    try:
        text = _encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):  # lone surrogates, odd types
        text = repr(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _is_small(value: Any) -> bool:
    """Whether ``value`` has at most 32 nodes, nested at most 4 deep."""
    budget = 32
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > 4:
            return False
        if isinstance(item, dict | list):
            if len(item) > budget:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True
