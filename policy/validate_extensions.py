"""Validation of the sections beyond rules: ``risk``, ``classifications``, ``action_types``,
``undeclared_types`` and ``limits`` (see :mod:`policy.validate` for the report and the rules).

Checked, each problem with its path and the id (or name) it belongs to:

(1) ``risk``: ``factors`` each ``{name, match?, when?, score}`` with a unique
    name, a ``match`` and/or ``when`` that does not read ``risk`` (factors make
    it), and ``score`` 0..100; ``bands`` ``{medium, high, critical}``, each
    0..100, strictly increasing once the defaults fill the gaps.
(2) ``classifications``: resource types ``[A-Za-z0-9_.:-]{1,64}`` mapping to
    ``{tier, risk_modifier}`` with a known tier and a decimal string from 0 to 10.
(3) ``action_types``: names ``[a-z][a-z0-9_.-]{0,63}`` mapping to
    ``{parameters?, summary?, amount_field?, amount_fields?, allow_negative?, asset_field?}``: a JSON Schema
    2020-12 that compiles, a template whose placeholders are key paths, key
    paths for the fields; ``undeclared_types`` is ``deny`` or ``allow`` and
    needs ``action_types``.
(4) ``limits``: each ``{id, per, window, sum | count, match?, when?, max,
    decision, reason?, approvals?, timeout_minutes?}``; ids unique among rules
    and limits; ``per`` a shorthand or a field path; a window such as ``24h``;
    exactly one of ``sum`` (an ``action.`` field path) and ``count: true``;
    ``max`` a non-negative decimal; ``decision`` DENY or ESCALATE, approvals as
    for rules.
(5) Everywhere: ``risk.*`` needs a ``risk`` section and ``classification.*``
    a ``classifications`` section, in ``match`` paths and in CEL.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from policy.action_types import ACTION_TYPE_FIELDS, MAX_AMOUNT_FIELDS, UNDECLARED_TYPES, compile_schema
from policy.classification import CLASSIFICATION_FIELDS, MAX_RISK_MODIFIER, TIERS
from policy.decimals import DECIMAL_TEXT, explain_not_decimal
from policy.document import (
    DENY,
    ESCALATE,
    RULE_ID,
    TIMEOUT_MINUTES,
    describe_value,
    parse_field_path,
    parse_window,
)
from policy.limits import LIMIT_FIELDS, PER_SHORTHANDS
from policy.risk import DEFAULT_BANDS, FACTOR_FIELDS, MAX_SCORE, RISK_FIELDS
from policy.summary import compile_template

__all__ = ["check_extensions", "unavailable_roots"]

RESOURCE_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
ACTION_TYPE_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
KEY_PATH = re.compile(r"[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){0,7}")


def unavailable_roots(document: dict[str, Any]) -> dict[str, str]:
    """(5) Roots that rules and limits may not read in this document, with the reason."""
    missing = {}
    if "risk" not in document:
        missing["risk"] = "risk.score and risk.level need a `risk` section"
    if "classifications" not in document:
        missing["classification"] = "classification.* needs a `classifications` section"
    return missing


def check_extensions(report: Any, document: dict[str, Any], list_names: set[str], rule_ids: set[str]) -> None:
    """Add every problem of the extension sections to ``report`` (a :class:`policy.validate._Report`)."""
    for key in ("risk", "classifications", "action_types", "limits"):
        if key in document:
            report.check_json(document[key], key)
    unavailable = unavailable_roots(document)
    if "risk" in document:
        _check_risk(report, document["risk"], list_names, unavailable)
    if "classifications" in document:
        _check_classifications(report, document["classifications"])
    if "action_types" in document:
        _check_action_types(report, document["action_types"])
    if "undeclared_types" in document:
        value = document["undeclared_types"]
        if value not in UNDECLARED_TYPES:
            report.add("undeclared_types", f"must be deny or allow, got {_show(value)}")
        elif "action_types" not in document:
            report.add("undeclared_types", "has no effect without `action_types`; declare the types")
    if "limits" in document:
        _check_limits(report, document["limits"], list_names, unavailable, rule_ids)


def _show(value: Any) -> str:
    return repr(value)[:60] if isinstance(value, str) else describe_value(value)


def _check_risk(report: Any, risk: Any, list_names: set[str], unavailable: dict[str, str]) -> None:  # (1)
    if not isinstance(risk, dict):
        report.add("risk", f"must be a mapping {{factors, bands?}}, got {describe_value(risk)}")
        return
    report.check_fields(risk, "risk", RISK_FIELDS, required=("factors",))
    factors = risk.get("factors", [])
    if not isinstance(factors, list):
        report.add("risk.factors", f"must be a list of factors, got {describe_value(factors)}")
        factors = []
    blocked = {**unavailable, "risk": "a risk factor cannot read risk.*: factors make the score"}
    seen: dict[str, int] = {}
    for index, factor in enumerate(factors):
        path = f"risk.factors[{index}]"
        if not isinstance(factor, dict):
            report.add(
                path,
                f"a factor must be a mapping {{name, match?, when?, score}}, got {describe_value(factor)}",
            )
            continue
        name = factor.get("name")
        label = name if isinstance(name, str) else None
        report.check_fields(factor, path, FACTOR_FIELDS, required=("name", "score"), rule=label)
        if "name" in factor:
            if not isinstance(name, str) or not RULE_ID.fullmatch(name):
                report.add(f"{path}.name", "factor names must match [a-z0-9][a-z0-9_.-]{0,63}", label)
            elif name in seen:
                report.add(f"{path}.name", f"duplicate factor name (also risk.factors[{seen[name]}])", label)
            else:
                seen[name] = index
        if "score" in factor:
            report.check_integer(factor["score"], f"{path}.score", (0, MAX_SCORE, 0), label)
        _check_condition(report, factor, path, label, list_names, blocked)
    bands = risk.get("bands", {})
    if not isinstance(bands, dict):
        report.add("risk.bands", f"must be a mapping {{medium, high, critical}}, got {describe_value(bands)}")
        return
    report.check_fields(bands, "risk.bands", tuple(DEFAULT_BANDS))
    for level, value in bands.items():
        if level in DEFAULT_BANDS:
            report.check_integer(value, f"risk.bands.{level}", (1, MAX_SCORE, 0))
    merged = {**DEFAULT_BANDS, **{k: v for k, v in bands.items() if type(v) is int}}
    if not merged["medium"] < merged["high"] < merged["critical"]:
        shown = ", ".join(f"{level} {merged[level]}" for level in DEFAULT_BANDS)
        report.add("risk.bands", f"must rise strictly from medium to high to critical; got {shown}")


def _check_condition(
    report: Any,
    spec: dict[str, Any],
    path: str,
    label: str | None,
    list_names: set[str],
    blocked: dict[str, str],
) -> None:
    if "match" not in spec and "when" not in spec:
        return  # a factor or a limit without either always applies
    if "match" in spec:
        report.check_match(spec["match"], f"{path}.match", label, list_names)
        if isinstance(spec["match"], dict):
            for field in spec["match"]:
                root = field.split(".", 1)[0] if isinstance(field, str) else ""
                if root in blocked:
                    report.add(f"{path}.match.{field}", blocked[root], label)
    if "when" in spec:
        report.check_when(spec["when"], f"{path}.when", label, list_names, blocked)


def _check_classifications(report: Any, section: Any) -> None:  # (2)
    if not isinstance(section, dict):
        report.add(
            "classifications",
            f"must map resource types to {{tier, risk_modifier}}, got {describe_value(section)}",
        )
        return
    for name, spec in section.items():
        path = f"classifications.{name}"
        if not isinstance(name, str) or not RESOURCE_TYPE.fullmatch(name):
            report.add(path, "resource types must match [A-Za-z0-9_.:-]{1,64}")
        if not isinstance(spec, dict):
            report.add(path, f"must be a mapping {{tier, risk_modifier}}, got {describe_value(spec)}")
            continue
        report.check_fields(spec, path, CLASSIFICATION_FIELDS, required=CLASSIFICATION_FIELDS)
        if "tier" in spec and spec["tier"] not in TIERS:
            report.add(f"{path}.tier", f"must be one of {', '.join(TIERS)}, got {_show(spec['tier'])}")
        if "risk_modifier" in spec:
            modifier = spec["risk_modifier"]
            if not (isinstance(modifier, str) and DECIMAL_TEXT.fullmatch(modifier)):
                report.add(
                    f"{path}.risk_modifier",
                    f'must be a decimal string such as "1.5"; this {explain_not_decimal(modifier)}',
                )
            elif not Decimal(0) <= Decimal(modifier) <= MAX_RISK_MODIFIER:
                report.add(f"{path}.risk_modifier", f"must be from 0 to {MAX_RISK_MODIFIER}, got {modifier}")


def _check_action_types(report: Any, section: Any) -> None:  # (3)
    if not isinstance(section, dict):
        report.add(
            "action_types", f"must map action types to their declarations, got {describe_value(section)}"
        )
        return
    for name, spec in section.items():
        path = f"action_types.{name}"
        if not isinstance(name, str) or not ACTION_TYPE_NAME.fullmatch(name):
            report.add(path, "action type names must match [a-z][a-z0-9_.-]{0,63}")
        if not isinstance(spec, dict):
            report.add(
                path,
                f"must be a mapping {{parameters?, summary?, amount_field?, amount_fields?, allow_negative?, asset_field?}}, got {describe_value(spec)}",
            )
            continue
        report.check_fields(spec, path, ACTION_TYPE_FIELDS)
        if "parameters" in spec:
            for where, message in compile_schema(spec["parameters"])[1]:
                report.add(f"{path}.parameters" + (f".{where}" if where else ""), message)
        if "summary" in spec:
            summary = spec["summary"]
            if not isinstance(summary, str) or not summary.strip():
                report.add(
                    f"{path}.summary", f"must be a non-empty template string, got {describe_value(summary)}"
                )
            else:
                for message in compile_template(summary)[1]:
                    report.add(f"{path}.summary", message)
        for key in ("amount_field", "asset_field"):
            if key in spec and not (isinstance(spec[key], str) and KEY_PATH.fullmatch(spec[key])):
                report.add(
                    f"{path}.{key}", "must be a key path inside the action, such as amount or payment.amount"
                )
        _check_amount_fields(report, spec, path)


def _check_amount_fields(report: Any, spec: dict[str, Any], path: str) -> None:
    """`amount_fields`: a list of distinct key paths; `allow_negative`: a boolean."""
    if "amount_fields" in spec:
        fields = spec["amount_fields"]
        if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_AMOUNT_FIELDS:
            report.add(
                f"{path}.amount_fields",
                f"must be a list of 1 to {MAX_AMOUNT_FIELDS} key paths, got {describe_value(fields)}",
            )
        else:
            for index, field in enumerate(fields):
                if not (isinstance(field, str) and KEY_PATH.fullmatch(field)):
                    report.add(
                        f"{path}.amount_fields[{index}]",
                        "must be a key path inside the action, such as fee or payment.tip",
                    )
                elif fields.index(field) != index:
                    report.add(f"{path}.amount_fields[{index}]", f"{field!r} is listed twice")
    if "allow_negative" in spec and not isinstance(spec["allow_negative"], bool):
        report.add(
            f"{path}.allow_negative", f"must be true or false, got {describe_value(spec['allow_negative'])}"
        )


def _check_limits(
    report: Any, limits: Any, list_names: set[str], unavailable: dict[str, str], rule_ids: set[str]
) -> None:  # (4)
    if not isinstance(limits, list):
        report.add("limits", f"must be a list of limits, got {describe_value(limits)}")
        return
    seen: dict[str, int] = {}
    for index, limit in enumerate(limits):
        path = f"limits[{index}]"
        if not isinstance(limit, dict):
            report.add(path, f"a limit must be a mapping, got {describe_value(limit)}")
            continue
        limit_id = limit.get("id")
        label = limit_id if isinstance(limit_id, str) else None
        required = ("id", "per", "window", "max", "decision")
        report.check_fields(limit, path, LIMIT_FIELDS, required=required, rule=label)
        if "id" in limit:
            if not isinstance(limit_id, str) or not RULE_ID.fullmatch(limit_id):
                report.add(f"{path}.id", "limit ids must match [a-z0-9][a-z0-9_.-]{0,63}", label)
            elif limit_id in seen:
                report.add(f"{path}.id", f"duplicate limit id (also limits[{seen[limit_id]}])", label)
            elif limit_id in rule_ids:
                report.add(f"{path}.id", "a rule has this id; limits and rules need distinct ids", label)
            else:
                seen[limit_id] = index
        if "per" in limit:
            per = limit["per"]
            field = parse_field_path(per) if isinstance(per, str) else None
            if per not in PER_SHORTHANDS and (field is None or field.root > 2):
                report.add(
                    f"{path}.per",
                    "must be agent, tenant, vendor, asset or a field path such as action.payee.iban",
                    label,
                )
        if "window" in limit and parse_window(limit["window"]) is None:
            report.add(
                f"{path}.window", 'must be a window such as "30s", "15m", "24h" or "7d" (up to 366d)', label
            )
        if ("sum" in limit) == ("count" in limit):
            report.add(path, "a limit needs exactly one of `sum: <amount field>` and `count: true`", label)
        if "sum" in limit:
            field = parse_field_path(limit["sum"]) if isinstance(limit["sum"], str) else None
            if field is None or field.root != 0:
                report.add(f"{path}.sum", "must be an action field path such as action.amount", label)
        if "count" in limit and limit["count"] is not True:
            report.add(f"{path}.count", "must be true (count actions); use `sum` to add amounts", label)
        if "max" in limit:
            value = limit["max"]
            if not (type(value) is int or (isinstance(value, str) and DECIMAL_TEXT.fullmatch(value))):
                report.add(
                    f"{path}.max",
                    f'must be a decimal string such as "20000"; this {explain_not_decimal(value)}',
                    label,
                )
            elif Decimal(str(value)) < 0:
                report.add(f"{path}.max", "must not be negative", label)
        decision = limit.get("decision")
        if "decision" in limit and decision not in (DENY, ESCALATE):
            report.add(f"{path}.decision", f"must be DENY or ESCALATE, got {_show(decision)}", label)
        if "reason" in limit:
            report.check_reason(limit["reason"], f"{path}.reason", label)
        if "approvals" in limit:
            report.check_approvals(limit["approvals"], f"{path}.approvals", label)
            if decision == DENY:
                report.add(
                    f"{path}.approvals", "only ESCALATE limits take approvals; this limit is DENY", label
                )
        elif decision == ESCALATE:
            report.add(
                f"{path}.approvals",
                "an ESCALATE limit needs approvals: {threshold, roles} or {all_of}",
                label,
            )
        if "timeout_minutes" in limit:
            report.check_integer(limit["timeout_minutes"], f"{path}.timeout_minutes", TIMEOUT_MINUTES, label)
            if decision == DENY:
                report.add(f"{path}.timeout_minutes", "only ESCALATE limits take timeout_minutes", label)
        _check_condition(report, limit, path, label, list_names, unavailable)
