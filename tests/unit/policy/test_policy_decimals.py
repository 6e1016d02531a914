"""Exact decimal comparison, cross-checked against Fraction on random decimal strings, and robustness."""

from __future__ import annotations

import datetime
import operator
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import EvaluationInput, compile_document
from policy.decimals import DECIMAL_TEXT, parse_decimal

ORDERINGS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}

decimal_texts = st.from_regex(DECIMAL_TEXT, fullmatch=True)
digits = st.text("0123456789", min_size=1, max_size=40)
# Numbers that are close to each other, so that the comparison is not decided by the first digit.
close_decimals = st.builds(
    lambda sign, whole, fraction: f"{sign}{whole}" + (f".{fraction}" if fraction else ""),
    st.sampled_from(["", "-"]),
    st.sampled_from(["0", "5000", "05000", "4999", "1" + "0" * 30]),
    st.one_of(st.just(""), digits),
)


@settings(max_examples=500)
@given(
    st.one_of(decimal_texts, close_decimals, st.integers()),
    st.one_of(decimal_texts, close_decimals, st.integers()),
)
def test_ordering_agrees_with_exact_rationals(left: str | int, right: str | int) -> None:
    left_decimal, right_decimal = parse_decimal(left), parse_decimal(right)
    assert left_decimal is not None and right_decimal is not None
    with localcontext() as context:
        context.prec = 3  # comparisons must not depend on the context's precision
        for name, compare in ORDERINGS.items():
            assert compare(left_decimal, right_decimal) == compare(Fraction(left), Fraction(right)), name


@settings(max_examples=300)
@given(st.text(max_size=12))
def test_only_plain_decimal_strings_parse(text: str) -> None:
    plain = DECIMAL_TEXT.fullmatch(text) is not None
    assert (parse_decimal(text) is not None) == plain
    if plain:
        assert parse_decimal(text) == Fraction(text)


@pytest.mark.parametrize(
    "text",
    ["1e3", "1E3", "NaN", "nan", "Infinity", "-inf", "+5", " 5", "5 ", ".5", "5.", "1_000", "٣", "5\n", ""],
)
def test_not_plain_decimals(text: str) -> None:
    assert parse_decimal(text) is None


@pytest.mark.parametrize("value", [True, False, 1.0, None, Decimal("1"), b"1", [1]])
def test_only_str_and_int_are_decimals(value: Any) -> None:
    assert parse_decimal(value) is None


def test_huge_values_compare_exactly() -> None:
    huge = "9" * 5000
    assert parse_decimal(huge + ".5") > parse_decimal(huge)  # type: ignore[operator]
    assert parse_decimal(10**5000) > parse_decimal(huge)  # type: ignore[operator]


# ---- evaluation never raises, whatever the request holds

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=8),
        decimal_texts,
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


ROBUSTNESS_POLICY = compile_document(
    {
        "schema": "verdict.policy/v1",
        "rules": [
            {"id": "amount", "decision": "ALLOW", "match": {"action.amount": {"lte": "100"}}},
            {"id": "vendor", "decision": "ALLOW", "match": {"action.vendor": {"in": ["a", 1, None]}}},
            {"id": "when", "decision": "ALLOW", "when": "now.getHours(action.zone) >= 0 && size(action) > 0"},
            {
                "id": "equal",
                "decision": "ALLOW",
                "match": {"action.items": {"eq": [{"a": 1}]}, "action.x": {"ne": 2}},
            },
        ],
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "amount", "vendor", "items", "zone", "x"]),
        json_values | st.integers(),
        max_size=6,
    )
)
def test_evaluation_never_raises_and_errors_never_allow(action: dict[str, Any]) -> None:
    policy = ROBUSTNESS_POLICY
    request = EvaluationInput(
        action, {"id": "a", "name": "b"}, {"id": "t", "name": "n"}, datetime.datetime.now(datetime.UTC)
    )
    decision = policy.evaluate(request)
    errors = [check.rule for check in decision.checks if check.error is not None]
    if errors:
        assert decision.decision == "DENY"
        assert decision.reason == f"policy_error:{errors[0]}"
    assert all(len(line) < 400 for check in decision.checks for line in check.conditions)


def test_deep_and_large_request_values_are_errors_or_summaries_not_crashes(build: Any, decide: Any) -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    policy = build(
        {"id": "eq", "decision": "ALLOW", "match": {"action.items": {"ne": [1]}}},
        {"id": "cel", "decision": "ALLOW", "when": "size(action.items) >= 0"},
    )
    decision = decide(policy, {"items": deep})
    assert decision.checks[0].conditions == ["action.items [...] != [1]: matched"]
    assert decision.checks[1].error == "action.items is nested deeper than 64 levels"
    too_big = decide(policy, {"items": [{"n": 2**64}]})
    assert (
        too_big.checks[1].error
        == "action.items holds an integer outside CEL's 64-bit range; send it as a string"
    )
    assert decision.reason == "policy_error:cel"
    wide = decide(policy, {"items": list(range(1_000_000))})
    assert wide.checks[0].conditions == ["action.items [...] != [1]: matched"]
    assert decide(policy, {"items": "x" * 10_000_000}).checks[0].conditions[0].startswith('action.items "xxx')


def test_odd_request_values_render_without_raising(build: Any, decide: Any) -> None:
    policy = build({"id": "r", "decision": "DENY", "match": {"action.x": {"eq": "a"}}})
    lines = [
        decide(policy, {"x": value}).checks[0].conditions[0] for value in ("\ud800", object(), 2**70, b"x")
    ]
    assert lines[0] == "action.x '\\ud800' == \"a\": not matched"
    assert lines[1] == 'action.x <object> == "a": not matched'
    assert lines[2] == f'action.x {2**70} == "a": not matched'
