"""Limits: claims (which limits apply, bucket key, amount) and judging window totals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from policy import EvaluationInput, PolicyInvalid, compile_document
from policy.limits import format_decimal

from .conftest import AGENT, NOON, TENANT, make_document

ALLOW_ALL = {"id": "allow", "decision": "ALLOW", "match": {}}
DAILY = {
    "id": "daily",
    "per": "agent",
    "window": "24h",
    "sum": "action.amount",
    "match": {"action.type": {"eq": "pay"}},
    "max": "20000",
    "decision": "ESCALATE",
    "approvals": {"threshold": 1, "roles": ["cfo"]},
}
HOURLY = {"id": "hourly", "per": "vendor", "window": "1h", "count": True, "max": 3, "decision": "DENY"}


def limited(*limits: dict[str, Any], rules: tuple[dict[str, Any], ...] = (ALLOW_ALL,), **top: Any) -> Any:
    return compile_document(make_document(*rules, limits=list(limits), **top))


def request(action: dict[str, Any], usage: dict[str, Any] | None = None, **extra: Any) -> EvaluationInput:
    return EvaluationInput(action, AGENT, TENANT, NOON, usage=usage, **extra)


def evaluate(policy: Any, req: EvaluationInput) -> Any:
    decision = policy.evaluate(req)
    quiet = policy.evaluate(req, explain=False)
    assert (quiet.decision, quiet.reason, quiet.limits) == (
        decision.decision,
        decision.reason,
        decision.limits,
    )
    return decision


PAY = {"type": "pay", "amount": "7800.00", "vendor": "acme"}


def test_claims_name_the_bucket_and_the_amount() -> None:
    policy = limited(DAILY, HOURLY)
    claims = policy.limit_claims(request(PAY))
    assert [(c.id, c.key, c.window_seconds, c.amount) for c in claims] == [
        ("daily", "agent-1", 86400, Decimal("7800.00")),
        ("hourly", "acme", 3600, Decimal(1)),
    ]
    assert [c.id for c in policy.limit_claims(request({"type": "other", "vendor": "acme"}))] == ["hourly"]


@pytest.mark.parametrize(
    ("total", "decision", "tripped", "headroom"),
    [
        ("0", "ALLOW", False, "20000"),
        ("12200.00", "ALLOW", False, "7800.00"),
        ("12200.01", "ESCALATE", True, "7799.99"),
        ("25000", "ESCALATE", True, "0"),
    ],
)
def test_a_limit_trips_when_total_plus_amount_exceeds_max(
    total: str, decision: str, tripped: bool, headroom: str
) -> None:
    result = evaluate(limited(DAILY), request(PAY, {"daily": Decimal(total)}))
    assert result.decision == decision
    (status,) = result.limits
    assert (status.id, status.window, status.total, status.max, status.headroom, status.tripped) == (
        "daily",
        "24h",
        total,
        "20000",
        headroom,
        tripped,
    )
    if tripped:
        assert result.reason == "limit_exceeded:daily"
        assert [r.rule for r in result.approvals_required] == ["daily"]
        line = next(c for c in result.checks if c.kind == "limit").conditions[-1]
        assert line == f"daily per agent agent-1 over 24h: {total} + 7800.00 > 20000: tripped"


def test_count_limits_and_deny_decisions() -> None:
    policy = limited(HOURLY)
    assert evaluate(policy, request(PAY, {"hourly": Decimal(2)})).decision == "ALLOW"
    denied = evaluate(policy, request(PAY, {"hourly": Decimal(3)}))
    assert (denied.decision, denied.reason) == ("DENY", "limit_exceeded:hourly")


def test_deny_rules_win_over_escalating_limits_and_limits_over_allow() -> None:
    deny = {"id": "deny-acme", "decision": "DENY", "match": {"action.vendor": {"eq": "acme"}}}
    assert (
        evaluate(limited(DAILY, rules=(deny,)), request(PAY, {"daily": Decimal(19000)})).reason == "deny-acme"
    )
    no_rules_allow = limited(
        DAILY, rules=({"id": "never", "decision": "DENY", "match": {"action.x": {"eq": 1}}},), default="ALLOW"
    )
    assert evaluate(no_rules_allow, request(PAY, {"daily": Decimal(19000)})).decision == "ESCALATE"
    no_rules_deny = limited(
        DAILY, rules=({"id": "never", "decision": "ALLOW", "match": {"action.x": {"eq": 1}}},)
    )
    assert evaluate(no_rules_deny, request(PAY, {"daily": Decimal(0)})).reason == "no_rule_matched"


@pytest.mark.parametrize(
    ("action", "usage"),
    [
        ({"type": "pay", "amount": 7800.5}, {"daily": Decimal(0)}),  # a float amount
        ({"type": "pay"}, {"daily": Decimal(0)}),  # no amount
        ({"type": "pay", "amount": "-100"}, {"daily": Decimal(0)}),  # a negative amount frees nothing
        (PAY, None),  # the gateway supplied no usage
        (PAY, {"daily": "lots"}),
    ],
)
def test_a_limit_that_cannot_be_evaluated_denies(action: dict[str, Any], usage: Any) -> None:
    decision = evaluate(limited(DAILY), request(action, usage))
    assert (decision.decision, decision.reason) == ("DENY", "policy_error:daily")


def test_asset_per_uses_the_action_types_asset_field() -> None:
    by_asset = {**HOURLY, "id": "per-asset", "per": "asset"}
    types = {"pay": {"asset_field": "money.asset"}}
    policy = limited(by_asset, action_types=types)
    claims = policy.limit_claims(request({"type": "pay", "money": {"asset": "USDC"}}))
    assert [c.key for c in claims] == ["USDC"]


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"window": "1w"}, "limits[0].window", "window such as"),
        ({"window": "400d"}, "limits[0].window", "window such as"),
        ({"per": "action"}, "limits[0].per", "field path"),
        ({"count": True}, "limits[0]", "exactly one"),
        ({"sum": "agent.id"}, "limits[0].sum", "action field path"),
        ({"max": 1.5}, "limits[0].max", "float"),
        ({"max": "-1"}, "limits[0].max", "negative"),
        ({"decision": "ALLOW"}, "limits[0].decision", "DENY or ESCALATE"),
        ({"approvals": None}, "limits[0].approvals", "mapping"),
        ({"id": "allow"}, "limits[0].id", "distinct ids"),
        ({"reason": "Bad Reason"}, "limits[0].reason", "codes"),
        ({"every": "day"}, "limits[0].every", "unknown field"),
    ],
)
def test_invalid_limits_are_refused_with_paths(change: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        limited({**DAILY, **change})
    assert any(p.path == path and fragment in p.message for p in caught.value.problems), caught.value.problems


def test_duplicate_limit_ids() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        limited(DAILY, DAILY)
    assert caught.value.problems[0].path == "limits[1].id"


@pytest.mark.parametrize(
    "text", ["15000.00", "0", "-0", "0.000001", "0.0000001", "1E+3", "-2.5E-9", "123456789012.123456"]
)
def test_format_decimal_writes_plain_digits_like_format_f(text: str) -> None:
    value = Decimal(text)
    assert format_decimal(value) == format(value, "f")
    assert format_decimal(value - 1) == format(value - 1, "f")
