"""Every `match` operator, with hits, misses and missing fields."""

from __future__ import annotations

from typing import Any

import pytest

from policy import Decision

DENY_RULE = {"id": "r", "decision": "DENY", "reason": "hit"}


def outcome(decision: Decision) -> str:
    """ "hit" when the rule matched, "miss" when it did not, "error" when it failed."""
    if decision.reason == "hit":
        return "hit"
    if decision.reason == "policy_error:r":
        return "error"
    assert decision.reason == "no_rule_matched"
    return "miss"


def run(
    build: Any, decide: Any, field: str, operators: dict[str, Any], action: dict[str, Any], **top: Any
) -> str:
    policy = build({**DENY_RULE, "match": {field: operators}}, default="ALLOW", **top)
    return outcome(decide(policy, action))


@pytest.mark.parametrize(
    ("operand", "value", "want"),
    [
        ("pay_invoice", "pay_invoice", "hit"),
        ("pay_invoice", "Pay_Invoice", "miss"),
        (5, 5, "hit"),
        (5, "5", "miss"),  # exact JSON equality: no string/number coercion
        ("5000", "5000.00", "miss"),  # eq does not compare as decimals
        (1, True, "miss"),  # true is not 1
        (True, True, "hit"),
        (True, 1, "miss"),
        (None, None, "hit"),
        (None, "null", "miss"),
        (5, 5.0, "miss"),  # a float never equals a document integer
        ({"a": [1, "x"]}, {"a": [1, "x"]}, "hit"),
        ({"a": [1, "x"]}, {"a": [True, "x"]}, "miss"),
        ([1, 2], [1, 2], "hit"),
        ([1, 2], [2, 1], "miss"),
    ],
)
def test_eq(build: Any, decide: Any, operand: Any, value: Any, want: str) -> None:
    assert run(build, decide, "action.x", {"eq": operand}, {"x": value}) == want
    negated = {"hit": "miss", "miss": "hit"}[want]
    assert run(build, decide, "action.x", {"ne": operand}, {"x": value}) == negated


@pytest.mark.parametrize("operator", ["eq", "ne", "in", "not_in"])
def test_missing_field_makes_equality_and_membership_false(build: Any, decide: Any, operator: str) -> None:
    operand = ["a"] if operator in ("in", "not_in") else "a"
    assert run(build, decide, "action.x", {operator: operand}, {}) == "miss"
    assert run(build, decide, "action.x.y", {operator: operand}, {"x": "not-a-mapping"}) == "miss"


def test_null_is_present_not_missing(build: Any, decide: Any) -> None:
    assert run(build, decide, "action.x", {"ne": "a"}, {"x": None}) == "hit"
    assert run(build, decide, "action.x", {"exists": True}, {"x": None}) == "hit"


@pytest.mark.parametrize(
    ("value", "want_in"),
    [("evil-corp", "hit"), ("good-corp", "miss"), (7, "hit"), ("7", "miss"), (True, "hit"), (1, "miss")],
)
def test_in_and_not_in_with_literal_and_named_lists(
    build: Any, decide: Any, value: Any, want_in: str
) -> None:
    items = ["evil-corp", 7, True, None]  # 1 must not be found through True, nor "7" through 7
    negated = {"hit": "miss", "miss": "hit"}[want_in]
    assert run(build, decide, "action.vendor", {"in": items}, {"vendor": value}) == want_in
    assert run(build, decide, "action.vendor", {"not_in": items}, {"vendor": value}) == negated
    named = {"lists": {"vendors": items}}
    assert run(build, decide, "action.vendor", {"in": "vendors"}, {"vendor": value}, **named) == want_in
    assert run(build, decide, "action.vendor", {"not_in": "vendors"}, {"vendor": value}, **named) == negated


def test_in_with_compound_items(build: Any, decide: Any) -> None:
    items = [{"iban": "DE1"}, ["a", 1]]
    assert run(build, decide, "action.payee", {"in": items}, {"payee": {"iban": "DE1"}}) == "hit"
    assert run(build, decide, "action.payee", {"in": items}, {"payee": ["a", 1]}) == "hit"
    assert run(build, decide, "action.payee", {"in": items}, {"payee": ["a", True]}) == "miss"
    assert run(build, decide, "action.payee", {"in": []}, {"payee": "x"}) == "miss"


@pytest.mark.parametrize(
    ("operand", "action", "want"),
    [
        (True, {"x": 1}, "hit"),
        (True, {}, "miss"),
        (False, {}, "hit"),
        (False, {"x": 1}, "miss"),
        (True, {"x": False}, "hit"),
    ],
)
def test_exists(build: Any, decide: Any, operand: bool, action: dict[str, Any], want: str) -> None:
    assert run(build, decide, "action.x", {"exists": operand}, action) == want


@pytest.mark.parametrize(
    ("operator", "operand", "value", "want"),
    [
        ("gt", "5000", "5000.01", "hit"),
        ("gt", "5000", "5000", "miss"),
        ("gt", "5000", "5000.00", "miss"),
        ("gt", "5000", "5000.000000000000000001", "hit"),
        ("gte", "5000", "5000.00", "hit"),
        ("gte", "5000", "4999.999999999999999999", "miss"),
        ("lt", "5000", "4999.999999999999999999", "hit"),
        ("lt", "5000", "5000.0", "miss"),
        ("lte", "5000", "5000.000", "hit"),
        ("lte", "5000", "5000.000000000000000001", "miss"),
        ("gt", "-10.5", "-10.4", "hit"),
        ("lt", "-10.5", "-10.51", "hit"),
        ("gt", 0, "-0", "miss"),
        ("gte", 0, "-0.000", "hit"),
        ("gt", 5000, 5001, "hit"),
        ("gt", "5000.5", 5000, "miss"),
        ("lt", "1" + "0" * 60, "9" * 60, "hit"),  # beyond any float's precision
        ("gt", "1" + "0" * 60, "1" + "0" * 59 + "1", "hit"),
        ("gt", "0", "0." + "0" * 80 + "1", "hit"),
        ("gt", "5000", "007000", "hit"),  # leading zeros are still plain decimals
    ],
)
def test_ordering_compares_exact_decimals(
    build: Any, decide: Any, operator: str, operand: Any, value: Any, want: str
) -> None:
    assert run(build, decide, "action.amount", {operator: operand}, {"amount": value}) == want


@pytest.mark.parametrize(
    "value",
    ["1e3", "NaN", "Infinity", "-Infinity", " 5", "5 ", "+5", ".5", "5.", "1_000", "0x10", "", "٣", "5\n"],
)
@pytest.mark.parametrize("operator", ["gt", "gte", "lt", "lte"])
def test_ordering_rejects_strings_that_are_not_plain_decimals(
    build: Any, decide: Any, operator: str, value: str
) -> None:
    assert run(build, decide, "action.amount", {operator: "1"}, {"amount": value}) == "error"


@pytest.mark.parametrize(
    "value", [7800.5, 5000.0, float("nan"), float("inf"), True, False, None, [1], {"a": 1}]
)
def test_ordering_rejects_floats_and_non_numbers_at_runtime(build: Any, decide: Any, value: Any) -> None:
    policy = build({**DENY_RULE, "decision": "ALLOW", "match": {"action.amount": {"lt": "10000"}}})
    decision = decide(policy, {"amount": value})
    assert decision.decision == "DENY"
    assert decision.reason == "policy_error:r"
    assert decision.matched_rules == ["r"]
    assert decision.checks[0].error is not None


def test_ordering_on_a_missing_field_is_an_error(build: Any, decide: Any) -> None:
    assert run(build, decide, "action.amount", {"gt": "1"}, {}) == "error"
    assert run(build, decide, "action.amount.value", {"gt": "1"}, {"amount": "5"}) == "error"


def test_float_error_message_tells_to_send_a_string(build: Any, decide: Any) -> None:
    policy = build({**DENY_RULE, "match": {"action.amount": {"gt": "1"}}})
    check = decide(policy, {"amount": 12.5}).checks[0]
    assert check.error is not None
    assert "float" in check.error
    assert check.conditions == [
        "action.amount 12.5 > 1: error: " + check.error.removeprefix("action.amount ")
    ]


def test_several_operators_on_one_field_all_hold(build: Any, decide: Any) -> None:
    band = {"gt": "5000", "lte": "50000"}
    assert run(build, decide, "action.amount", band, {"amount": "50000"}) == "hit"
    assert run(build, decide, "action.amount", band, {"amount": "50000.01"}) == "miss"
    assert run(build, decide, "action.amount", band, {"amount": "5000"}) == "miss"


def test_nested_action_paths(build: Any, decide: Any) -> None:
    assert run(build, decide, "action.payee.country", {"eq": "DE"}, {"payee": {"country": "DE"}}) == "hit"
    assert run(build, decide, "action.payee.country", {"eq": "DE"}, {"payee": {}}) == "miss"
    assert run(build, decide, "action.payee.country", {"exists": False}, {"payee": "DE"}) == "hit"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent.id", "agent-1"),
        ("agent.name", "payments-bot"),
        ("tenant.id", "tenant-1"),
        ("tenant.name", "acme"),
    ],
)
def test_agent_and_tenant_fields(build: Any, decide: Any, field: str, value: str) -> None:
    assert run(build, decide, field, {"eq": value}, {}) == "hit"
    assert run(build, decide, field, {"eq": value + "-other"}, {}) == "miss"


def test_empty_match_always_matches(build: Any, decide: Any) -> None:
    policy = build({**DENY_RULE, "match": {}}, default="ALLOW")
    assert outcome(decide(policy, {})) == "hit"


def test_trace_lines(build: Any, decide: Any) -> None:
    policy = build(
        {
            **DENY_RULE,
            "match": {
                "action.vendor": {"in": "blocked"},
                "action.amount": {"gt": "5000"},
                "action.x": {"exists": True},
            },
        },
        lists={"blocked": ["evil"]},
    )
    check = decide(policy, {"vendor": "evil", "amount": "7800.00"}).checks[0]
    assert check.conditions == [
        'action.vendor "evil" in blocked: matched',
        "action.amount 7800.00 > 5000: matched",
        "action.x <missing> exists: not matched",
    ]
    assert check.matched is False
    long_value = "v" * 200
    line = decide(policy, {"vendor": long_value}).checks[0].conditions[0]
    assert line.endswith("..." + " in blocked: not matched")
    assert len(line) < 120


def test_trace_shows_each_requests_own_value_of_a_field_many_conditions_read(build: Any, decide: Any) -> None:
    # Explain on reads and renders a field once per evaluation for all the conditions that read it;
    # never across evaluations of the same compiled policy.
    policy = build(
        {"id": "a", "decision": "DENY", "match": {"action.vendor": {"eq": "evil"}}},
        {"id": "b", "decision": "DENY", "match": {"action.vendor": {"in": ["bad", "worse"]}}},
        {"id": "c", "decision": "DENY", "match": {"action.vendor": {"exists": True}}},
        {"id": "allow", "decision": "ALLOW", "match": {}},
    )
    lines = [check.conditions for check in decide(policy, {"vendor": "acme"}).checks]
    assert lines[:3] == [
        ['action.vendor "acme" == "evil": not matched'],
        ['action.vendor "acme" in ["bad","worse"]: not matched'],
        ['action.vendor "acme" exists: matched'],
    ]
    lines = [check.conditions for check in decide(policy, {"vendor": "worse"}).checks]
    assert lines[:2] == [
        ['action.vendor "worse" == "evil": not matched'],
        ['action.vendor "worse" in ["bad","worse"]: matched'],
    ]
    lines = [check.conditions for check in decide(policy, {}).checks]
    assert lines[2] == ["action.vendor <missing> exists: not matched"]
