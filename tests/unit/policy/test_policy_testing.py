"""policy.testing (table-driven cases) and policy.simulate."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from policy import EvaluationInput, PolicyInvalid, compile_document, load_policy
from policy.simulate import RecordedRequest, simulate
from policy.testing import load_cases, run_cases

from .conftest import AGENT, NOON, TENANT, make_document

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
AP_POLICY = EXAMPLES / "accounts-payable.yaml"
AP_CASES = EXAMPLES / "accounts-payable.cases.yaml"


def test_the_accounts_payable_example_passes_its_cases() -> None:
    policy = load_policy(AP_POLICY.read_bytes(), "application/yaml").compiled
    report = run_cases(policy, load_cases(AP_CASES.read_bytes()))
    assert report.ok, [(r.name, r.failures) for r in report.results if not r.passed]
    assert report.passed == len(report.results) >= 15


def test_a_failing_case_says_what_differs() -> None:
    policy = load_policy(AP_POLICY.read_bytes(), "application/yaml").compiled
    cases = load_cases(
        b"""cases:
  - name: wrong
    action: {type: pay_invoice, amount: "120.00", asset: USDC, vendor: acme, invoice: inv_1}
    context: {vendor: {first_seen: false, prior_count: 1}}
    expect: {decision: DENY, reason: nope, approvals: [], risk_level: high}
"""
    )
    (result,) = run_cases(policy, cases).results
    assert not result.passed
    assert result.failures == [
        "decision: want DENY, got ALLOW (allow-payments)",
        "reason: want nope, got allow-payments",
        "risk_level: want high, got low",
    ]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"cases: {}", "cases"),
        (b"cases: [{name: x, action: {}}]", "cases[0].expect"),
        (b"cases: [{name: x, action: {}, expect: {decision: MAYBE}}]", "cases[0].expect.decision"),
        (b"cases: [{name: x, action: {}, now: 2026-01-01, expect: {decision: DENY}}]", "cases[0].now"),
        (b"cases: [{name: x, action: {}, usage: {l: 1.5}, expect: {decision: DENY}}]", "cases[0].usage.l"),
        (b"cases: [{name: x, action: {}, colour: red, expect: {decision: DENY}}]", "cases[0].colour"),
    ],
)
def test_malformed_cases_are_reported_with_paths(body: bytes, path: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load_cases(body)
    assert path in [p.path for p in caught.value.problems]


def test_simulate_reports_only_changed_decisions() -> None:
    old = compile_document(
        make_document(
            {
                "id": "cfo",
                "decision": "ESCALATE",
                "match": {"action.amount": {"gt": "5000"}},
                "approvals": {"threshold": 1, "roles": ["cfo"]},
            },
            {"id": "allow", "decision": "ALLOW", "match": {}},
        )
    )
    draft = compile_document(
        make_document(
            {
                "id": "cfo",
                "decision": "ESCALATE",
                "match": {"action.amount": {"gt": "1000"}},
                "approvals": {"threshold": 1, "roles": ["cfo"]},
            },
            {"id": "allow", "decision": "ALLOW", "match": {}},
        )
    )
    recorded = []
    for index, amount in enumerate(["500", "2000", "9000"]):
        request = EvaluationInput({"amount": amount}, AGENT, TENANT, NOON)
        before = old.evaluate(request)
        recorded.append(
            RecordedRequest(
                f"act_{index}", request, before.decision, before.reason, before.approvals_required
            )
        )
    changes = simulate(draft, recorded)
    assert [(c.id, c.before_decision, c.after_decision, c.after_reason) for c in changes] == [
        ("act_1", "ALLOW", "ESCALATE", "cfo")
    ]
    assert simulate(old, recorded) == []


def test_default_now_is_a_monday_afternoon() -> None:
    from policy.testing import DEFAULT_NOW

    assert DEFAULT_NOW.weekday() == 0 and DEFAULT_NOW.tzinfo is datetime.UTC
