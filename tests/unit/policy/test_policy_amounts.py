"""Amounts at intake: the syntax, which fields a policy declares as amounts, and negative amounts."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy import PolicyInvalid, compile_document
from policy.action_types import DEFAULT_AMOUNT_PATHS, amount_problems
from policy.decimals import AMOUNT_TEXT, DECIMAL_TEXT, MAX_AMOUNT_DIGITS, explain_not_amount, parse_decimal

# The issue's regular expression, written independently of AMOUNT_TEXT.
ISSUE_PATTERN = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")
REFUSED = ["-5", "-0", "NaN", "1e309", "+7800", "7_800", "\uff17\uff18\uff10\uff10", "7800.", "", "lots",
           "007", ".5", " 1", "1 ", "1\n", "0x10", "Infinity", "-", "1.2.3", "1" * 79]  # fmt: skip


@pytest.mark.parametrize("value", REFUSED)
def test_what_is_not_an_amount(value: str) -> None:
    assert explain_not_amount(value) is not None


@pytest.mark.parametrize("value", [5, 5.0, None, True, ["1"], {"v": "1"}])
def test_an_amount_is_a_string(value: Any) -> None:
    assert "decimal string" in (explain_not_amount(value) or "")


def test_negative_amounts_only_when_allowed() -> None:
    for value in ("-5", "-0", "-0.00", "-1.5"):
        assert "negative" in (explain_not_amount(value) or "")
        assert explain_not_amount(value, allow_negative=True) is None
    assert explain_not_amount("-+5", allow_negative=True) is not None


def test_at_most_78_digits_whatever_the_point() -> None:
    assert MAX_AMOUNT_DIGITS == 78
    assert explain_not_amount("1" * 78) is None
    assert explain_not_amount("1" * 40 + "." + "1" * 38) is None
    assert explain_not_amount("-" + "1" * 78, allow_negative=True) is None
    assert "79 digits" in (explain_not_amount("1" * 40 + "." + "1" * 39) or "")


@given(st.text(alphabet="-+.0123456789e_ ", max_size=12))
def test_agrees_with_the_issue_pattern(text: str) -> None:
    expected = ISSUE_PATTERN.fullmatch(text) is not None and len(re.sub(r"[-.]", "", text)) <= 78
    assert (explain_not_amount(text, allow_negative=True) is None) == expected


@given(st.from_regex(AMOUNT_TEXT, fullmatch=True))
def test_every_amount_is_a_decimal_the_policy_reads_exactly(text: str) -> None:
    assert DECIMAL_TEXT.fullmatch(text)
    assert parse_decimal(text) == Decimal(text)


def test_which_fields_are_amounts() -> None:
    document = {
        "schema": "verdict.policy/v1",
        "action_types": {
            "refund": {"amount_field": "payment.value", "amount_fields": ["fee"], "allow_negative": True},
            "pay": {},
        },
        "undeclared_types": "allow",
        "limits": [
            {"id": "fx", "per": "agent", "window": "1h", "sum": "action.fx", "max": "10", "decision": "DENY"}
        ],
        "rules": [{"id": "r", "decision": "ALLOW", "match": {"action.type": {"eq": "pay"}}}],
    }
    compiled = compile_document(document)
    problems = compiled.amount_problems
    assert problems({"type": "refund", "payment": {"value": "-1"}, "fee": "-0", "amount": "x"}) == []
    assert [f for f, _ in problems({"type": "refund", "payment": {"value": 1}, "fee": "1e3"})] == [
        "action.payment.value",
        "action.fee",
    ]
    assert [f for f, _ in problems({"type": "pay", "amount": "-1", "fx": "1."})] == [
        "action.amount",
        "action.fx",
    ]
    assert [f for f, _ in problems({"type": "other", "amount": "NaN"})] == ["action.amount"]
    assert problems({"type": "other", "payment": "not a mapping", "fee": "x"}) == []
    assert amount_problems({"amount": "-1"}, DEFAULT_AMOUNT_PATHS)[0][0] == "action.amount"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"amount_fields": []}, "action_types.t.amount_fields"),
        ({"amount_fields": "fee"}, "action_types.t.amount_fields"),
        ({"amount_fields": ["fee"] * 2}, "action_types.t.amount_fields[1]"),
        ({"amount_fields": ["a b"]}, "action_types.t.amount_fields[0]"),
        ({"amount_fields": [f"f{i}" for i in range(17)]}, "action_types.t.amount_fields"),
        ({"allow_negative": 1}, "action_types.t.allow_negative"),
    ],
)
def test_amount_declarations_are_validated(spec: dict[str, Any], path: str) -> None:
    document = {
        "schema": "verdict.policy/v1",
        "action_types": {"t": spec},
        "rules": [{"id": "r", "decision": "DENY", "match": {"action.type": {"eq": "t"}}}],
    }
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(document)
    assert path in [p.path for p in caught.value.problems]
