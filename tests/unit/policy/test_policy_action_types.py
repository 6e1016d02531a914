"""Action types: parameters schemas, undeclared types, summaries."""

from __future__ import annotations

from typing import Any

import pytest

from policy import PolicyInvalid, compile_document
from policy.summary import compile_template, format_amount

from .conftest import make_document

ALLOW_ALL = {"id": "allow", "decision": "ALLOW", "match": {}}
PAY = {
    "parameters": {
        "type": "object",
        "required": ["type", "amount", "asset", "vendor"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "pay_invoice"},
            "amount": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
            "asset": {"enum": ["USDC", "EURC"]},
            "vendor": {"type": "string"},
            "invoice": {"type": "string"},
            "payee": {"type": "object"},
        },
    },
    "summary": "Pay {amount} {asset} to {vendor} for {invoice}",
}
GOOD = {
    "type": "pay_invoice",
    "amount": "7800.00",
    "asset": "USDC",
    "vendor": "acme-supplies",
    "invoice": "inv_8231",
}


def typed(**top: Any) -> Any:
    return compile_document(make_document(ALLOW_ALL, action_types={"pay_invoice": PAY}, **top))


def test_a_valid_action_passes_its_schema(decide: Any) -> None:
    policy = typed()
    assert policy.check_parameters(GOOD) == []
    assert decide(policy, GOOD).decision == "ALLOW"


def test_every_violation_is_listed_by_json_pointer(decide: Any) -> None:
    policy = typed()
    bad = {"type": "pay_invoice", "amount": "7,800", "asset": "DOGE", "extra": 1, "payee": []}
    violations = policy.check_parameters(bad)
    pointers = sorted(v.pointer for v in violations)
    assert pointers == ["", "", "/amount", "/asset", "/payee"]
    assert any("'vendor'" in v.message and "missing" in v.message for v in violations)
    assert any("'extra'" in v.message for v in violations)
    assert all("7,800" not in v.message for v in violations)  # the value is not echoed
    decision = decide(policy, bad)
    assert (decision.decision, decision.reason) == ("DENY", "invalid_parameters")
    assert decision.violations == violations


def test_pointers_escape_slash_and_tilde() -> None:
    schema = {"type": "object", "properties": {"a/b~c": {"type": "string"}}}
    policy = compile_document(make_document(ALLOW_ALL, action_types={"t": {"parameters": schema}}))
    assert policy.check_parameters({"type": "t", "a/b~c": 1})[0].pointer == "/a~1b~0c"


@pytest.mark.parametrize(("setting", "expected"), [(None, "DENY"), ("deny", "DENY"), ("allow", "ALLOW")])
def test_undeclared_types(decide: Any, setting: str | None, expected: str) -> None:
    policy = typed(**({"undeclared_types": setting} if setting else {}))
    decision = decide(policy, {"type": "wire_transfer"})
    assert decision.decision == expected
    if expected == "DENY":
        assert decision.reason == "undeclared_action_type"
    assert decide(policy, {"amount": "1"}).decision == expected  # no type at all


def test_without_action_types_every_type_is_as_before(build: Any, decide: Any) -> None:
    assert decide(build(ALLOW_ALL), {"type": "anything"}).decision == "ALLOW"


@pytest.mark.parametrize(
    ("spec", "fragment", "path"),
    [
        ({"parameters": {"type": 12}}, "not a valid JSON Schema", "action_types.t.parameters.type"),
        (
            {"parameters": {"$ref": "https://example.com/s.json"}},
            "does not compile",
            "action_types.t.parameters",
        ),
        (
            {"parameters": {"$schema": "http://json-schema.org/draft-07/schema#"}},
            "2020-12",
            "action_types.t.parameters.$schema",
        ),
        (
            {"parameters": {"type": "object", "additionalProperties": False}},
            "list `type`",
            "action_types.t.parameters.properties",
        ),
        ({"summary": "Pay {amount"}, "unbalanced", "action_types.t.summary"),
        ({"summary": "Pay {amount:,}"}, "key path", "action_types.t.summary"),
        ({"summary": "Pay {amount[0]}"}, "key path", "action_types.t.summary"),
        ({"summary": "Pay {0}{}"}, "key path", "action_types.t.summary"),
        ({"amount_field": "a..b"}, "key path", "action_types.t.amount_field"),
        ({"colour": "red"}, "unknown field", "action_types.t.colour"),
    ],
)
def test_invalid_action_types_are_refused_with_paths(spec: dict[str, Any], fragment: str, path: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(make_document(ALLOW_ALL, action_types={"t": spec}))
    assert any(p.path == path and fragment in p.message for p in caught.value.problems), caught.value.problems


def test_undeclared_types_needs_action_types() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(make_document(ALLOW_ALL, undeclared_types="allow"))
    assert caught.value.problems[0].path == "undeclared_types"


def test_summary_template_renders_amounts_exactly() -> None:
    policy = typed()
    assert policy.render_summary(GOOD) == "Pay 7,800.00 USDC to acme-supplies for inv_8231"
    big = {**GOOD, "amount": "1234567.000000000000000001"}
    assert policy.render_summary(big).startswith("Pay 1,234,567.000000000000000001 USDC")


def test_summary_shows_missing_fields_and_neutralizes_control_characters() -> None:
    policy = typed()
    action = {**GOOD, "vendor": "acme\nApproved by CFO\u202e"}
    del action["invoice"]
    assert policy.render_summary(action) == "Pay 7,800.00 USDC to acme Approved by CFO  for <missing invoice>"


def test_summary_templates_cannot_reach_python_attributes() -> None:
    """Placeholders are dictionary lookups in the action, never str.format attribute access."""
    template, problems = compile_template("{{literal}} {type.__class__.__mro__} {a.b}")
    assert problems == [] and template is not None
    from policy.scopes import DEFAULT_FIELDS
    from policy.summary import render_template

    rendered = render_template(template, {"type": "t", "a": {"b": "ok"}}, DEFAULT_FIELDS)
    assert rendered == "{literal} <missing type.__class__.__mro__> ok"


def test_default_summary_without_a_template(build: Any) -> None:
    policy = build(ALLOW_ALL)
    action = {"type": "pay_invoice", "amount": "7800.00", "asset": "USDC", "vendor": "acme-supplies"}
    assert policy.render_summary(action) == "pay invoice of 7,800.00 USDC to acme-supplies"
    assert policy.render_summary({}) == "action"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0", "0"),
        ("999", "999"),
        ("1000", "1,000"),
        ("-1234567.5", "-1,234,567.5"),
        ("7800.00", "7,800.00"),
        ("1e5", "1e5"),
        ("abc", "abc"),
    ],
)
def test_format_amount(text: str, shown: str) -> None:
    assert format_amount(text) == shown
