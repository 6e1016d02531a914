"""Conditions written the same way run once per evaluation (the memo): decisions and traces unchanged."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import policy.compile
from policy import CompiledPolicy, EvaluationInput, compile_document, load_policy

from .conftest import AGENT, NOON, TENANT, make_document

ACCOUNTS_PAYABLE = Path(__file__).resolve().parents[3] / "examples" / "accounts-payable.yaml"
USAGE = {
    "daily-spend-per-agent": Decimal("15000.00"),
    "weekly-spend-per-vendor": Decimal("99000"),
    "payments-per-hour": Decimal(4),
}
ACTIONS: list[dict[str, Any]] = [
    {"type": "pay_invoice", "amount": "120.00", "asset": "USDC", "vendor": "acme", "invoice": "inv_1"},
    {"type": "pay_invoice", "amount": "7800.00", "asset": "USDC", "vendor": "acme", "invoice": "inv_2"},
    {"type": "pay_invoice", "amount": "75000", "asset": "USDC", "vendor": "acme", "invoice": "inv_3"},
    {"type": "pay_invoice", "amount": "900.00", "asset": "DOGE", "vendor": "evil-corp", "invoice": "inv_4"},
    {"type": "pay_invoice", "asset": "USDC", "vendor": "acme", "invoice": "inv_5"},  # no amount
    {"type": "pay_invoice", "amount": "lots", "asset": "USDC", "vendor": "acme", "invoice": "inv_6"},
    {"type": "export_report", "report": "q3", "resource_type": "payroll"},
    {"type": "export_report", "report": "q3", "resource_type": "marketing_metrics"},
    {"type": "wire", "amount": "1"},
]


def compile_unshared(monkeypatch: pytest.MonkeyPatch, compile_it: Any) -> CompiledPolicy:
    """Compile with a memo slot per condition, as if no two conditions were written the same way."""
    original = policy.compile.compile_conditions

    class Unshared(dict[Any, int]):
        def __init__(self, table: dict[Any, int]) -> None:
            super().__init__()
            self.table = table

        def __len__(self) -> int:
            return len(self.table)

        def setdefault(self, key: Any, default: Any = None) -> int:
            slot = self.table[object()] = len(self.table)
            return slot

    def unshared(match: Any, lists: Any, where: Any, rule: Any, slots: dict[Any, int]) -> Any:
        return original(match, lists, where, rule, Unshared(slots))

    with monkeypatch.context() as patch:
        patch.setattr(policy.compile, "compile_conditions", unshared)
        return compile_it()


def requests() -> list[EvaluationInput]:
    tenants = [{**TENANT, "timezone": "America/New_York"}, TENANT]
    contexts = [{"vendor": {"first_seen": True, "prior_count": 0}}, {"vendor": {"first_seen": False}}]
    return [
        EvaluationInput(
            action, AGENT, tenant, NOON + datetime.timedelta(hours=hours), context=context, usage=USAGE
        )
        for action in ACTIONS
        for tenant in tenants
        for context in contexts
        for hours in (0, 10)
    ]


def test_the_accounts_payable_document_shares_its_repeated_conditions() -> None:
    def compile_it() -> CompiledPolicy:
        return load_policy(ACCOUNTS_PAYABLE.read_bytes(), "application/yaml").compiled

    shared = compile_it()
    slots = [slot for rule in shared.rules for slot, _ in rule.matcher.conditions]
    assert len(set(slots)) < len(slots)  # `action.type eq pay_invoice` has one slot


def test_shared_conditions_give_the_same_decisions_and_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_it() -> CompiledPolicy:
        return load_policy(ACCOUNTS_PAYABLE.read_bytes(), "application/yaml").compiled

    shared, unshared = compile_it(), compile_unshared(monkeypatch, compile_it)
    slots = [slot for rule in unshared.rules for slot, _ in rule.matcher.conditions]
    assert len(set(slots)) == len(slots)
    for request in requests():
        for explain in (True, False):
            assert shared.evaluate(request, explain=explain) == unshared.evaluate(request, explain=explain)
        assert shared.limit_claims(request) == unshared.limit_claims(request)


def test_a_repeated_condition_that_fails_is_traced_as_an_error_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = [
        {"id": f"big-{index}", "decision": "DENY", "match": {"action.amount": {"gt": "100"}}}
        for index in range(3)
    ]
    document = make_document(*rules, {"id": "allow", "decision": "ALLOW", "match": {}})
    shared = compile_document(document)
    unshared = compile_unshared(monkeypatch, lambda: compile_document(document))
    request = EvaluationInput({"amount": "many"}, AGENT, TENANT, NOON)
    decision = shared.evaluate(request)
    assert decision == unshared.evaluate(request)
    assert shared.evaluate(request, explain=False) == unshared.evaluate(request, explain=False)
    assert decision.reason == "policy_error:big-0"
    assert [check.error for check in decision.checks[:3]] == [decision.checks[0].error] * 3
    assert decision.checks[0].error is not None


def test_the_same_field_and_operator_with_other_operands_are_not_shared() -> None:
    document = make_document(
        {"id": "text", "decision": "DENY", "match": {"action.level": {"eq": "1"}}},
        {"id": "number", "decision": "DENY", "match": {"action.level": {"eq": 1}}},
        {"id": "bool", "decision": "DENY", "match": {"action.level": {"eq": True}}},
        {"id": "allow", "decision": "ALLOW", "match": {}},
    )
    compiled = compile_document(document)
    assert len({slot for rule in compiled.rules for slot, _ in rule.matcher.conditions}) == 3
    request = EvaluationInput({"level": 1}, AGENT, TENANT, NOON)
    assert [check.matched for check in compiled.evaluate(request).checks] == [False, True, False, True]


def test_the_memo_lasts_one_evaluation() -> None:
    document = make_document(
        {"id": "a", "decision": "DENY", "match": {"action.vendor": {"eq": "bad"}}},
        {"id": "b", "decision": "DENY", "match": {"action.vendor": {"eq": "bad"}}},
        {"id": "allow", "decision": "ALLOW", "match": {}},
    )
    compiled = compile_document(document)
    for vendor, expected in (("bad", "DENY"), ("good", "ALLOW"), ("bad", "DENY")):
        request = EvaluationInput({"vendor": vendor}, AGENT, TENANT, NOON)
        for explain in (True, False):
            assert compiled.evaluate(request, explain=explain).decision == expected
