"""Validation of a ``verdict.policy/v1`` document, collecting every problem.

Each problem names its path (``rules[1].match.action.amount.gt``) and the id of
the rule it sits in, so an author can fix a document in one round. Checked:

(1) the document is a mapping with only known fields, ``schema`` is
    ``verdict.policy/v1``, ``default`` a decision, ``verdict_ttl_seconds`` 1..3600;
(2) ``lists`` maps names (``[a-z][a-z0-9_]{0,63}``) to lists of JSON values;
(3) ``rules`` is a non-empty list of rules with known fields, unique ids
    (``[a-z0-9][a-z0-9_.-]{0,63}``), a decision, a reason code, and ``match``
    and/or ``when``;
(4) ``match`` keys are known field paths and operators; operands fit them;
(5) ``when`` compiles and refers only to known variables, functions, lists and time zones;
(6) ESCALATE rules, and only they, have ``approvals``: ``{threshold, roles}`` (threshold
    1..32, unique roles ``[a-z][a-z0-9_-]{0,31}``) or ``{all_of: [{role, min}]}``
    (unique roles, min 1..32), never both; and may set ``timeout_minutes`` (1..43200);
(7) the sections ``risk``, ``classifications``, ``action_types``,
    ``undeclared_types`` and ``limits`` (see :mod:`policy.validate_extensions`);
(8) ``defaults`` has only ``requested_approvals``, approvals as in (6): who reviews an action
    its agent proposed with ``require_approval`` where the policy would allow it.

Everywhere, values must be JSON that canonicalizes exactly: no floats (quote
amounts), no YAML dates or binary, integers within ±(2**53 - 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policy.cel_env import compile_expression
from policy.decimals import DECIMAL_TEXT, explain_not_decimal
from policy.document import (
    APPROVAL_FIELDS,
    DECISIONS,
    DEFAULTS_FIELDS,
    DOCUMENT_FIELDS,
    ESCALATE,
    LIST_NAME,
    MAX_APPROVERS,
    MEMBERSHIP_OPERATORS,
    OPERATORS,
    ORDERING_OPERATORS,
    REASON,
    ROLE,
    ROLE_QUOTA_FIELDS,
    RULE_FIELDS,
    RULE_ID,
    SCHEMA_ID,
    TIMEOUT_MINUTES,
    VERDICT_TTL_SECONDS,
    describe_value,
    find_non_json_values,
    parse_field_path,
)
from policy.errors import Problem
from policy.validate_extensions import check_extensions, unavailable_roots

__all__ = ["validate_document"]

_UNKNOWN_FIELD_PATH = (
    "unknown field path; use action.<key>[.<key>...], agent.id, agent.name, tenant.id, tenant.name, "
    "tenant.timezone, risk.score, risk.level, classification.tier, classification.resource_type, "
    "context.vendor.first_seen, context.vendor.prior_count, context.agent.spend.<window> "
    "or context.agent.count.<window>"
)


def validate_document(document: Any) -> list[Problem]:
    """Return every problem with ``document`` (empty when it is valid). Never raises."""
    report = _Report()
    if not isinstance(document, dict):
        report.add("", f"a policy document must be a mapping, got {describe_value(document)}")
        return report.problems
    report.check_fields(document, "", DOCUMENT_FIELDS, required=("schema", "rules"))  # (1)
    if "schema" in document and document["schema"] != SCHEMA_ID:
        report.add("schema", f"must be {SCHEMA_ID!r}, got {_show(document['schema'])}")
    if "default" in document and document["default"] not in ("ALLOW", "DENY"):
        # An ESCALATE default would name no approvers: nobody could approve it, or an empty
        # requirement would count as met. Escalation belongs in a rule with `approvals`.
        report.add(
            "default",
            f"must be DENY or ALLOW (escalate from a rule with approvals), got {_show(document['default'])}",
        )
    if "verdict_ttl_seconds" in document:
        report.check_integer(document["verdict_ttl_seconds"], "verdict_ttl_seconds", VERDICT_TTL_SECONDS)
    if "defaults" in document:  # (8)
        report.check_defaults(document["defaults"])
    list_names = report.check_lists(document["lists"]) if "lists" in document else set()  # (2)
    report.unavailable = unavailable_roots(document)
    if "rules" in document:
        report.check_rules(document["rules"], list_names)
    rule_ids = {
        rule["id"]
        for rule in document.get("rules", [])
        if isinstance(document.get("rules"), list)
        and isinstance(rule, dict)
        and isinstance(rule.get("id"), str)
    }
    check_extensions(report, document, list_names, rule_ids)  # (7)
    return report.problems


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else describe_value(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Report:
    """The problems found so far, and the checks that add to them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.unavailable: dict[str, str] = {}  # roots rules may not read, with the reason

    def add(self, path: str, message: str, rule: str | None = None) -> None:
        self.problems.append(Problem(path=path, message=message, rule=rule))

    def check_fields(
        self,
        mapping: dict[Any, Any],
        path: str,
        allowed: Iterable[str],
        required: Iterable[str] = (),
        rule: str | None = None,
    ) -> None:
        allowed = tuple(allowed)
        for key in mapping:
            if not isinstance(key, str):
                self.add(path, f"key {key!r} is {describe_value(key)}; keys must be strings", rule)
            elif key not in allowed:
                self.add(
                    _join(path, key), f"unknown field {key!r}; expected one of {', '.join(allowed)}", rule
                )
        for key in required:
            if key not in mapping:
                self.add(_join(path, key), "is required", rule)

    def check_integer(
        self, value: Any, path: str, bounds: tuple[int, int, int], rule: str | None = None
    ) -> None:
        low, high, _ = bounds
        if type(value) is not int:
            self.add(path, f"must be an integer from {low} to {high}, got {describe_value(value)}", rule)
        elif not low <= value <= high:
            self.add(path, f"must be from {low} to {high}, got {value}", rule)

    def check_json(self, value: Any, path: str, rule: str | None = None) -> None:
        for where, message in find_non_json_values(value, path):
            self.add(where, message, rule)

    def check_lists(self, lists: Any) -> set[str]:
        if not isinstance(lists, dict):
            self.add("lists", f"must be a mapping of list names to lists, got {describe_value(lists)}")
            return set()
        names = set()
        for name, items in lists.items():
            if not isinstance(name, str):
                self.add("lists", f"key {name!r} is {describe_value(name)}; list names must be strings")
                continue
            names.add(name)
            path = f"lists.{name}"
            if not LIST_NAME.fullmatch(name):
                self.add(path, "list names must match [a-z][a-z0-9_]{0,63}")
            if isinstance(items, list):
                self.check_json(items, path)
            else:
                self.add(path, f"must be a list, got {describe_value(items)}")
        return names

    def check_rules(self, rules: Any, list_names: set[str]) -> None:  # (3)
        if not isinstance(rules, list):
            self.add("rules", f"must be a list of rules, got {describe_value(rules)}")
            return
        if not rules:
            self.add("rules", "must hold at least one rule")
        first_seen: dict[str, int] = {}
        for index, rule in enumerate(rules):
            path = f"rules[{index}]"
            if not isinstance(rule, dict):
                self.add(path, f"a rule must be a mapping, got {describe_value(rule)}")
                continue
            rule_id = rule.get("id")
            label = rule_id if isinstance(rule_id, str) else None
            self.check_fields(rule, path, RULE_FIELDS, required=("id", "decision"), rule=label)
            if "id" in rule:
                if not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id):
                    self.add(f"{path}.id", "rule ids must match [a-z0-9][a-z0-9_.-]{0,63}", label)
                elif rule_id in first_seen:
                    self.add(f"{path}.id", f"duplicate rule id (also rules[{first_seen[rule_id]}])", label)
                else:
                    first_seen[rule_id] = index
            self.check_rule_body(rule, path, label, list_names)

    def check_rule_body(
        self, rule: dict[str, Any], path: str, label: str | None, list_names: set[str]
    ) -> None:
        decision = rule.get("decision")
        if "decision" in rule and decision not in DECISIONS:
            self.add(
                f"{path}.decision", f"must be one of {', '.join(DECISIONS)}, got {_show(decision)}", label
            )
        if "reason" in rule:
            self.check_reason(rule["reason"], f"{path}.reason", label)
        if "match" not in rule and "when" not in rule:
            self.add(path, "a rule needs `match`, `when` or both; `match: {}` matches every request", label)
        if "match" in rule:
            self.check_match(rule["match"], f"{path}.match", label, list_names)
            if isinstance(rule["match"], dict):
                for field in rule["match"]:
                    root = field.split(".", 1)[0] if isinstance(field, str) else ""
                    if root in self.unavailable:
                        self.add(f"{path}.match.{field}", self.unavailable[root], label)
        if "when" in rule:
            self.check_when(rule["when"], f"{path}.when", label, list_names, self.unavailable)
        if "approvals" in rule:  # (6)
            self.check_approvals(rule["approvals"], f"{path}.approvals", label)
            if decision in DECISIONS and decision != ESCALATE:
                self.add(
                    f"{path}.approvals", f"only ESCALATE rules take approvals; this rule is {decision}", label
                )
        elif decision == ESCALATE:
            self.add(
                f"{path}.approvals", "an ESCALATE rule needs approvals: {threshold, roles} or {all_of}", label
            )
        if "timeout_minutes" in rule:
            self.check_integer(rule["timeout_minutes"], f"{path}.timeout_minutes", TIMEOUT_MINUTES, label)
            if decision in DECISIONS and decision != ESCALATE:
                message = f"only ESCALATE rules take timeout_minutes; this rule is {decision}"
                self.add(f"{path}.timeout_minutes", message, label)

    def check_match(self, match: Any, path: str, label: str | None, list_names: set[str]) -> None:  # (4)
        if not isinstance(match, dict):
            self.add(
                path, f"must be a mapping of field paths to conditions, got {describe_value(match)}", label
            )
            return
        for field, operators in match.items():
            if not isinstance(field, str):
                self.add(path, f"key {field!r} is {describe_value(field)}; field paths are strings", label)
                continue
            field_path = f"{path}.{field}"
            if parse_field_path(field) is None:
                self.add(field_path, _UNKNOWN_FIELD_PATH, label)
            if not isinstance(operators, dict) or not operators:
                self.add(
                    field_path, "must be a non-empty mapping of operators to operands, e.g. {eq: x}", label
                )
                continue
            for name, operand in operators.items():
                if name not in OPERATORS:
                    message = f"unknown operator {_show(name)}; expected one of {', '.join(OPERATORS)}"
                    self.add(f"{field_path}.{name}", message, label)
                else:
                    self.check_operand(name, operand, f"{field_path}.{name}", label, list_names)

    def check_operand(
        self, name: str, operand: Any, path: str, label: str | None, list_names: set[str]
    ) -> None:
        if name in ORDERING_OPERATORS:
            if type(operand) is int or (isinstance(operand, str) and DECIMAL_TEXT.fullmatch(operand)):
                self.check_json(operand, path, label)  # integers must still be canonical-safe
            else:
                self.add(
                    path,
                    f"{name} takes a decimal string or integer; this {explain_not_decimal(operand)}",
                    label,
                )
        elif name in MEMBERSHIP_OPERATORS:
            if isinstance(operand, str):
                if operand not in list_names:
                    self.add(path, f"unknown list {operand!r}; define it under `lists`", label)
            elif isinstance(operand, list):
                self.check_json(operand, path, label)
            else:
                self.add(
                    path, f"{name} takes a list or the name of a list, got {describe_value(operand)}", label
                )
        elif name == "exists":
            if not isinstance(operand, bool):
                self.add(path, f"exists takes true or false, got {describe_value(operand)}", label)
        else:
            self.check_json(operand, path, label)

    def check_reason(self, reason: Any, path: str, label: str | None) -> None:
        if not (isinstance(reason, str) and REASON.fullmatch(reason)):
            self.add(path, "reasons are codes matching [a-z0-9][a-z0-9_.-]{0,127}", label)

    def check_when(
        self,
        source: Any,
        path: str,
        label: str | None,
        list_names: set[str],
        blocked: dict[str, str] | None = None,
    ) -> None:  # (5)
        if not isinstance(source, str) or not source.strip():
            self.add(path, f"must be a non-empty CEL expression string, got {describe_value(source)}", label)
            return
        before = len(self.problems)
        self.check_json(source, path, label)
        if len(self.problems) == before:
            expression, problems = compile_expression(source, list_names)
            for message in problems:
                self.add(path, message, label)
            if expression is not None:
                for root in sorted(expression.reads.keys() & (blocked or {}).keys()):
                    self.add(path, (blocked or {})[root], label)

    def check_defaults(self, defaults: Any) -> None:
        if not isinstance(defaults, dict):
            self.add("defaults", f"must be a mapping {{requested_approvals}}, got {describe_value(defaults)}")
            return
        self.check_fields(defaults, "defaults", DEFAULTS_FIELDS)
        if "requested_approvals" in defaults:
            self.check_approvals(defaults["requested_approvals"], "defaults.requested_approvals", None)

    def check_approvals(self, approvals: Any, path: str, label: str | None) -> None:
        if not isinstance(approvals, dict):
            message = f"must be a mapping {{threshold, roles}} or {{all_of}}, got {describe_value(approvals)}"
            self.add(path, message, label)
            return
        if "all_of" in approvals:
            self.check_fields(approvals, path, ("all_of",), rule=label)
            self.check_all_of(approvals["all_of"], f"{path}.all_of", label)
            return
        required = ("threshold", "roles")
        self.check_fields(approvals, path, APPROVAL_FIELDS, required=required, rule=label)
        roles = approvals.get("roles")
        role_count = None
        if "roles" in approvals:
            if not isinstance(roles, list) or not roles:
                self.add(
                    f"{path}.roles", f"must be a non-empty list of roles, got {describe_value(roles)}", label
                )
            else:
                role_count = len(roles)
                for index, role in enumerate(roles):
                    self.check_role(role, roles[:index], f"{path}.roles[{index}]", label)
        if "threshold" in approvals:
            # M distinct signers in any of the roles: three directors may approve with one role
            high = MAX_APPROVERS if role_count else 1
            self.check_integer(approvals["threshold"], f"{path}.threshold", (1, high, 1), label)

    def check_all_of(self, quotas: Any, path: str, label: str | None) -> None:
        if not isinstance(quotas, list) or not quotas:
            message = f"must be a non-empty list of {{role, min}}, got {describe_value(quotas)}"
            self.add(path, message, label)
            return
        seen: list[Any] = []
        for index, quota in enumerate(quotas):
            item = f"{path}[{index}]"
            if not isinstance(quota, dict):
                self.add(item, f"must be a mapping {{role, min}}, got {describe_value(quota)}", label)
                continue
            self.check_fields(quota, item, ROLE_QUOTA_FIELDS, required=ROLE_QUOTA_FIELDS, rule=label)
            if "role" in quota:
                self.check_role(quota["role"], seen, f"{item}.role", label)
                seen.append(quota["role"])
            if "min" in quota:
                self.check_integer(quota["min"], f"{item}.min", (1, MAX_APPROVERS, 1), label)

    def check_role(self, role: Any, earlier: list[Any], path: str, label: str | None) -> None:
        if not isinstance(role, str) or not ROLE.fullmatch(role):
            self.add(path, "roles must match [a-z][a-z0-9_-]{0,31}", label)
        elif role in earlier:
            self.add(path, f"duplicate role {role!r}", label)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
