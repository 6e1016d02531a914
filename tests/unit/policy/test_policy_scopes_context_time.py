"""Agent scopes, history context and the tenant's time zone (across DST changes)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from policy import EvaluationInput, PolicyInvalid, compile_document
from policy.scopes import ActionFields, ScopeInvalid, check_scope, load_scope

from .conftest import AGENT, NOON, TENANT, make_document

ALLOW_ALL = {"id": "allow", "decision": "ALLOW", "match": {}}
PAY = {"type": "pay_invoice", "amount": "7800.00", "asset": "USDC", "vendor": "acme"}


# -- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "action", "expected"),
    [
        ({}, PAY, None),
        ({"action_types": ["pay_invoice"]}, PAY, None),
        ({"action_types": ["trade"]}, PAY, "scope_violation:action_type"),
        ({"assets": ["EURC"]}, PAY, "scope_violation:asset"),
        ({"assets": ["USDC"]}, {"type": "pay_invoice"}, "scope_violation:asset"),
        ({"max_amount": "7800"}, PAY, None),
        ({"max_amount": "7799.99"}, PAY, "scope_violation:amount"),
        ({"max_amount": "1"}, {"type": "x"}, "scope_violation:amount"),
        ({"max_amount": "1000000"}, {**PAY, "amount": 12.5}, "scope_violation:amount"),
        ({"action_types": ["trade"], "assets": ["EURC"]}, PAY, "scope_violation:action_type"),
    ],
)
def test_check_scope(scope: dict[str, Any], action: dict[str, Any], expected: str | None) -> None:
    assert check_scope(load_scope(scope), action) == expected


def test_scope_reads_the_action_types_fields() -> None:
    fields = ActionFields(amount=("payment", "value"), asset=("payment", "coin"))
    action = {"type": "p", "payment": {"value": "50", "coin": "EURC"}}
    assert check_scope(load_scope({"assets": ["EURC"], "max_amount": "50"}), action, fields) is None


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ([], ""),
        ({"assets": "USDC"}, "assets"),
        ({"max_amount": 100}, "max_amount"),
        ({"max_amount": "-1"}, "max_amount"),
        ({"roles": []}, "roles"),
    ],
)
def test_invalid_scopes(scope: Any, path: str) -> None:
    with pytest.raises(ScopeInvalid) as caught:
        load_scope(scope)
    assert caught.value.problems[0].path == path


def test_scope_is_checked_before_any_rule(build: Any) -> None:
    deny = {"id": "deny-all", "decision": "DENY", "match": {}}
    policy = build(deny)
    request = EvaluationInput(PAY, AGENT, TENANT, NOON, scope=load_scope({"assets": ["EURC"]}))
    decision = policy.evaluate(request)
    assert (decision.decision, decision.reason, decision.matched_rules) == (
        "DENY",
        "scope_violation:asset",
        [],
    )
    assert decision.checks[0].kind == "scope"
    inside = EvaluationInput(PAY, AGENT, TENANT, NOON, scope=load_scope({"assets": ["USDC"]}))
    assert policy.evaluate(inside).reason == "deny-all"


# -- context -------------------------------------------------------------------------------------


def test_context_needs_come_from_match_and_cel() -> None:
    rules = [
        {"id": "a", "decision": "DENY", "match": {"context.vendor.first_seen": {"eq": True}}},
        {
            "id": "b",
            "decision": "DENY",
            "when": 'double(context.agent.spend["24h"]) > 10.0 && context.agent.count["1h"] > 3',
        },
        ALLOW_ALL,
    ]
    policy = compile_document(make_document(*rules))
    assert policy.context_needs == {"vendor.first_seen", "agent.spend.24h", "agent.count.1h"}
    plain = compile_document(make_document(ALLOW_ALL))
    assert plain.context_needs == frozenset()


def test_rules_read_context_and_the_decision_returns_what_it_used() -> None:
    rules = [
        {"id": "new", "decision": "DENY", "match": {"context.vendor.first_seen": {"eq": True}}},
        {"id": "busy", "decision": "DENY", "when": 'context.agent.count["24h"] >= 10'},
        {"id": "few", "decision": "DENY", "match": {"context.vendor.prior_count": {"lt": 3}}},
        ALLOW_ALL,
    ]
    policy = compile_document(make_document(*rules))
    known = {"vendor": {"first_seen": False, "prior_count": 14}, "agent": {"count": {"24h": 2}}}
    decision = policy.evaluate(EvaluationInput(PAY, AGENT, TENANT, NOON, context=known))
    assert decision.decision == "ALLOW"
    assert decision.context == {"agent.count.24h": 2, "vendor.first_seen": False, "vendor.prior_count": 14}
    new = {"vendor": {"first_seen": True, "prior_count": 0}, "agent": {"count": {"24h": 2}}}
    assert policy.evaluate(EvaluationInput(PAY, AGENT, TENANT, NOON, context=new)).reason == "new"


def test_missing_context_fails_closed() -> None:
    rule = {"id": "busy", "decision": "ALLOW", "when": 'context.agent.count["24h"] < 10'}
    policy = compile_document(make_document(rule))
    decision = policy.evaluate(EvaluationInput(PAY, AGENT, TENANT, NOON))
    assert (decision.decision, decision.reason) == ("DENY", "policy_error:busy")


@pytest.mark.parametrize(
    "source",
    [
        "context.agent.spend > 1",
        "size(context) > 0",
        'context.agent.spend["1 week"] > 1',
        "context.vendor.name == 'x'",
    ],
)
def test_context_must_be_read_by_whole_values(source: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(make_document({"id": "r", "decision": "DENY", "when": source}))
    assert "unsupported use of `context`" in caught.value.problems[0].message


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(
            make_document({"id": "r", "decision": "DENY", "match": {"context.vendor.name": {"eq": 1}}})
        )
    assert caught.value.problems[0].path == "rules[0].match.context.vendor.name"


# -- time ----------------------------------------------------------------------------------------

NEW_YORK = {**TENANT, "timezone": "America/New_York"}


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(datetime.UTC)


def office(source: str) -> Any:
    return compile_document(make_document({"id": "r", "decision": "ALLOW", "when": source}))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        # 2026-03-06 (Friday) EST, UTC-5: 09:00 local is 14:00Z
        ("2026-03-06T13:59:00+00:00", False),
        ("2026-03-06T14:00:00+00:00", True),
        # 2026-03-09 (Monday) EDT, UTC-4 since 2026-03-08: 09:00 local is 13:00Z
        ("2026-03-09T13:00:00+00:00", True),
        ("2026-03-09T12:59:00+00:00", False),
        ("2026-03-09T20:59:00+00:00", True),  # 16:59 EDT
        ("2026-03-09T21:00:00+00:00", False),  # 17:00 EDT
        # 2026-10-30 (Friday) EDT; 2026-11-02 (Monday) EST after the change of 2026-11-01
        ("2026-10-30T13:00:00+00:00", True),
        ("2026-11-02T13:00:00+00:00", False),  # 08:00 EST
        ("2026-11-02T14:00:00+00:00", True),
        ("2026-11-02T21:59:00+00:00", True),  # 16:59 EST
        # weekends
        ("2026-03-08T15:00:00+00:00", False),
        ("2026-11-01T15:00:00+00:00", False),
    ],
)
def test_business_hours_follow_the_tenant_zone_across_dst(moment: str, inside: bool) -> None:
    policy = office('business_hours(now, "09:00", "17:00")')
    decision = policy.evaluate(EvaluationInput({}, AGENT, NEW_YORK, at(moment)))
    assert (decision.decision == "ALLOW") is inside, decision.checks


def test_is_weekend_in_the_tenant_zone() -> None:
    policy = office("is_weekend(now)")
    # Saturday 2026-03-07 01:00Z is still Friday 20:00 in New York
    assert (
        policy.evaluate(EvaluationInput({}, AGENT, NEW_YORK, at("2026-03-07T01:00:00+00:00"))).decision
        == "DENY"
    )
    assert (
        policy.evaluate(EvaluationInput({}, AGENT, TENANT, at("2026-03-07T01:00:00+00:00"))).decision
        == "ALLOW"
    )


def test_overnight_windows_and_bad_arguments() -> None:
    night = office('business_hours(now, "22:00", "06:00")')
    assert (
        night.evaluate(EvaluationInput({}, AGENT, TENANT, at("2026-03-09T23:00:00+00:00"))).decision
        == "ALLOW"
    )
    assert (
        night.evaluate(EvaluationInput({}, AGENT, TENANT, at("2026-03-09T12:00:00+00:00"))).decision == "DENY"
    )
    bad = office('business_hours(now, "9am", "17:00")')
    assert bad.evaluate(EvaluationInput({}, AGENT, TENANT, NOON)).reason == "policy_error:r"
    unknown_zone = {**TENANT, "timezone": "Mars/Olympus"}
    policy = office("is_weekend(now)")
    assert policy.evaluate(EvaluationInput({}, AGENT, unknown_zone, NOON)).reason == "policy_error:r"


def test_match_on_tenant_timezone() -> None:
    rule = {"id": "r", "decision": "DENY", "match": {"tenant.timezone": {"eq": "America/New_York"}}}
    policy = compile_document(make_document(rule, ALLOW_ALL))
    assert policy.evaluate(EvaluationInput({}, AGENT, NEW_YORK, NOON)).decision == "DENY"
