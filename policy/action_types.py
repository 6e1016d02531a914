"""Action types: the parameters schema, summary template and money fields of each kind of action.

::

    action_types:
      pay_invoice:
        parameters: {type: object, required: [amount, asset, vendor], ...}   # JSON Schema 2020-12
        summary: "Pay {amount} {asset} to {vendor} for {invoice}"
        amount_field: amount        # key path inside the action; default "amount"
        amount_fields: [fee]        # more amounts in the action (key paths); default none
        allow_negative: false       # may its amounts be negative (refunds, adjustments)? default false
        asset_field: asset          # default "asset"
    undeclared_types: deny          # deny (default) | allow

``parameters`` is a JSON Schema (Draft 2020-12) that the **whole action
object** must satisfy, ``type`` included: a schema with
``additionalProperties: false`` must list ``type`` among its properties
(publishing says so). Schemas are compiled once per policy version with
``jsonschema_rs`` (a Rust implementation passing the JSON Schema test suite,
about 40 times faster than the pure-Python ``jsonschema`` here); references
resolve only inside the schema (no network). ``format`` is asserted, so
``format: date`` means a date.

Amounts: the ``amount_field`` and every ``amount_fields`` entry of the action's type (``amount``
for an undeclared type), and every limit's ``sum`` field, must be absent or an amount
(:func:`policy.decimals.explain_not_amount`): the gateway refuses anything else at intake (422
``invalid_amount``), before a rule sees it. Negative amounts only with ``allow_negative: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from policy.decimals import explain_not_amount
from policy.decision import ParameterViolation
from policy.document import describe_value
from policy.scopes import DEFAULT_FIELDS, ActionFields
from policy.summary import Template, compile_template, render_default_summary, render_template
from policy.values import render_value

__all__ = [
    "ActionType",
    "amount_problems",
    "compile_action_type",
    "compile_schema",
    "render_summary_for",
]

ACTION_TYPE_FIELDS = (
    "parameters",
    "summary",
    "amount_field",
    "amount_fields",
    "allow_negative",
    "asset_field",
)
MAX_AMOUNT_FIELDS = 16
DEFAULT_AMOUNT_PATHS: tuple[tuple[str, ...], ...] = (("amount",),)
UNDECLARED_TYPES = ("deny", "allow")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_VIOLATIONS = 50


@dataclass(frozen=True, slots=True)
class ActionType:
    """A declared action type, compiled. Immutable; its validator is safe to share between threads."""

    name: str
    schema: Any
    validator: Any  # jsonschema_rs.Draft202012Validator | None
    summary: Template | None
    fields: ActionFields
    amount_paths: tuple[tuple[str, ...], ...] = DEFAULT_AMOUNT_PATHS  # amount_field, then amount_fields
    allow_negative: bool = False

    def check_parameters(self, action: Mapping[str, Any]) -> list[ParameterViolation]:
        """Every way ``action`` breaks the ``parameters`` schema (empty when it holds). Never raises."""
        validator = self.validator
        if validator is None:
            return []
        try:
            if validator.is_valid(action):
                return []
            errors = list(validator.iter_errors(action))
        except (ValueError, TypeError, OverflowError, jsonschema_rs.ValidationError) as error:
            return [
                ParameterViolation("", f"the action holds a value JSON Schema cannot read: {error}"[:200])
            ]
        if not errors:
            return [ParameterViolation("", "the action holds a value JSON Schema cannot read")]
        violations = [ParameterViolation(_pointer(e.instance_path), self._describe(e)) for e in errors]
        return violations[:MAX_VIOLATIONS]

    def _describe(self, error: Any) -> str:
        """Say which keyword failed and what the schema asked for, without echoing the action's value."""
        kind = error.kind
        kind_name = type(kind).__name__
        if kind_name == "Required":
            return f"required property {str(kind.property)[:64]!r} is missing"
        if kind_name in ("AdditionalProperties", "UnevaluatedProperties"):
            names = ", ".join(repr(str(name)[:64]) for name in list(kind.unexpected)[:5])
            return f"properties not allowed here: {names}"
        path = list(error.schema_path)
        keyword = str(path[-1]) if path else "schema"
        wanted: Any = self.schema
        for step in path:
            if isinstance(wanted, dict) and step in wanted:
                wanted = wanted[step]
            elif isinstance(wanted, list) and isinstance(step, int) and step < len(wanted):
                wanted = wanted[step]
            else:
                return f"does not satisfy {keyword}"
        return f"does not satisfy {keyword} {render_value(wanted)}"


def _pointer(path: Any) -> str:
    """RFC 6901: ``["payee", "iban"]`` -> ``/payee/iban``; ``~`` and ``/`` escaped."""
    return "".join("/" + str(step).replace("~", "~0").replace("/", "~1") for step in path)


def compile_schema(schema: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Check ``schema`` against the 2020-12 meta-schema and compile it.

    Returns the validator (``None`` on problems) and ``(relative path, message)``
    for each problem. Never raises.
    """
    if not isinstance(schema, dict | bool):
        return None, [("", f"must be a JSON Schema (a mapping), got {describe_value(schema)}")]
    if isinstance(schema, dict) and schema.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        return None, [("$schema", f"only JSON Schema 2020-12 is supported ({DRAFT_2020_12})")]
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as error:
        where = ".".join(str(step) for step in error.instance_path)
        return None, [(where, f"not a valid JSON Schema 2020-12: {error.message}"[:300])]
    except (ValueError, TypeError) as error:
        return None, [("", f"not a valid JSON Schema: {error}"[:300])]
    problems = []
    if isinstance(schema, dict):
        closed = schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False
        if closed and "type" not in schema.get("properties", {}):
            problems.append(
                (
                    "properties",
                    "the schema applies to the whole action, `type` included: list `type` in properties",
                )
            )
    try:
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError) as error:
        message = str(error).split("\n", 1)[0]
        return None, [("", f"the schema does not compile: {message}"[:300])]
    return (None if problems else validator), problems


def compile_action_type(name: str, spec: Mapping[str, Any]) -> ActionType:
    """Compile one validated ``action_types`` entry."""
    validator = None
    if "parameters" in spec:
        validator, _ = compile_schema(spec["parameters"])
    template = compile_template(spec["summary"])[0] if "summary" in spec else None
    fields = ActionFields(
        amount=tuple(spec.get("amount_field", "amount").split(".")),
        asset=tuple(spec.get("asset_field", "asset").split(".")),
    )
    extra = tuple(tuple(path.split(".")) for path in spec.get("amount_fields", ()))
    amount_paths = tuple(dict.fromkeys((fields.amount, *extra)))
    return ActionType(
        name,
        spec.get("parameters"),
        validator,
        template,
        fields,
        amount_paths,
        spec.get("allow_negative", False),
    )


def amount_problems(
    action: Mapping[str, Any], paths: tuple[tuple[str, ...], ...], *, allow_negative: bool = False
) -> list[tuple[str, str]]:
    """``(field, why)`` for each of ``paths`` present in ``action`` whose value is not an amount
    (``field`` as ``action.<key path>``). Never raises."""
    problems = []
    for path in paths:
        value: Any = action
        for key in path:
            if not isinstance(value, Mapping) or key not in value:
                break
            value = value[key]
        else:
            why = explain_not_amount(value, allow_negative=allow_negative)
            if why is not None:
                problems.append(("action." + ".".join(path), why))
    return problems


def render_summary_for(declared: ActionType | None, action: Mapping[str, Any]) -> str:
    """The approver's sentence: the type's template, else :func:`policy.summary.render_default_summary`."""
    if declared is not None and declared.summary is not None:
        return render_template(declared.summary, action, declared.fields)
    return render_default_summary(action, declared.fields if declared is not None else DEFAULT_FIELDS)
