"""`action_types.<type>.rails`: the rails an action type's executions may run on."""

from __future__ import annotations

import pytest

from policy import PolicyInvalid, compile_document

from .conftest import make_document

ALLOW_ALL = {"id": "allow", "decision": "ALLOW", "match": {}}


def test_rails_are_read_per_type_and_none_when_unsaid() -> None:
    compiled = compile_document(
        make_document(
            ALLOW_ALL,
            action_types={"pay_invoice": {"rails": ["bank_api", "ops_bank"]}, "memo": {}},
            undeclared_types="allow",
        )
    )
    assert compiled.action_rails("pay_invoice") == ("bank_api", "ops_bank")
    assert compiled.action_rails("memo") is None
    assert compiled.action_rails("unknown") is None
    assert compile_document(make_document(ALLOW_ALL)).action_rails("pay_invoice") is None


@pytest.mark.parametrize(
    ("rails", "message"),
    [
        ([], "non-empty list"),
        ("bank_api", "non-empty list"),
        (["Bank API"], "rail names must match"),
        (["bank_api", "bank_api"], "lists a rail twice"),
        ([7], "rail names must match"),
    ],
)
def test_bad_rails_are_refused_at_publishing(rails: object, message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(make_document(ALLOW_ALL, action_types={"pay_invoice": {"rails": rails}}))
    problems = [(p.path, p.message) for p in caught.value.problems]
    assert any(
        path.startswith("action_types.pay_invoice.rails") and message in text for path, text in problems
    ), problems


def test_rules_match_on_the_rail_the_action_names() -> None:
    rule = {
        "id": "only-bank",
        "decision": "DENY",
        "reason": "wrong_rail",
        "match": {"action.rail": {"ne": "bank_api"}},
    }
    compiled = compile_document(make_document(rule, ALLOW_ALL))
    from datetime import UTC, datetime

    from policy import EvaluationInput

    def decide(action: dict) -> str:
        request = EvaluationInput(action=action, agent={"id": "a", "name": "a"}, tenant={"id": "t", "name": "t"},
                                  now=datetime.now(UTC))  # fmt: skip
        return compiled.evaluate(request).decision

    assert decide({"type": "pay_invoice", "rail": "bank_api"}) == "ALLOW"
    assert decide({"type": "pay_invoice", "rail": "x402"}) == "DENY"
