"""How matched rules combine into one decision: precedence, reasons, approvals, defaults, errors."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from policy import ApprovalRequirement, Check, Decision, load_policy


def rule(rule_id: str, decision: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rule_id, "decision": decision, "match": {}, **extra}
    if decision == "ESCALATE" and "approvals" not in extra:
        body["approvals"] = {"threshold": 1, "roles": ["cfo"]}
    return body


def test_deny_overrides_escalate_overrides_allow(build: Any, decide: Any) -> None:
    allow, escalate, deny = rule("a", "ALLOW"), rule("e", "ESCALATE"), rule("d", "DENY")
    assert decide(build(allow, escalate, deny), {}).decision == "DENY"
    assert decide(build(deny, escalate, allow), {}).decision == "DENY"
    assert decide(build(allow, escalate), {}).decision == "ESCALATE"
    assert decide(build(escalate, allow), {}).decision == "ESCALATE"
    assert decide(build(allow), {}).decision == "ALLOW"


def test_reason_is_the_first_matched_rule_with_the_winning_decision(build: Any, decide: Any) -> None:
    policy = build(
        rule("allow-1", "ALLOW", reason="fine"),
        rule("deny-1", "DENY", reason="first_deny"),
        rule("deny-2", "DENY", reason="second_deny"),
    )
    decision = decide(policy, {})
    assert decision.reason == "first_deny"
    assert decision.matched_rules == ["allow-1", "deny-1", "deny-2"]
    assert decision.approvals_required is None
    assert decision.timeout_minutes is None


def test_reason_defaults_to_the_rule_id(build: Any, decide: Any) -> None:
    assert decide(build(rule("allow-rest", "ALLOW")), {}).reason == "allow-rest"


def test_escalations_combine_their_approvals_and_take_the_shortest_timeout(build: Any, decide: Any) -> None:
    policy = build(
        rule("cfo", "ESCALATE", approvals={"threshold": 1, "roles": ["cfo"]}, timeout_minutes=120),
        rule("skipped", "ESCALATE", match={"action.x": {"eq": 1}}, timeout_minutes=1),
        rule("board", "ESCALATE", approvals={"threshold": 2, "roles": ["ceo", "controller", "cfo"]}),
        rule("quick", "ESCALATE", approvals={"threshold": 1, "roles": ["ops"]}, timeout_minutes=30),
        rule("rest", "ALLOW"),
    )
    decision = decide(policy, {})
    assert decision.decision == "ESCALATE"
    assert decision.reason == "cfo"
    assert decision.matched_rules == ["cfo", "board", "quick", "rest"]
    assert decision.approvals_required == [
        ApprovalRequirement("cfo", 1, ("cfo",)),
        ApprovalRequirement(
            "board",
            2,
            (
                "ceo",
                "controller",
                "cfo",
            ),
        ),
        ApprovalRequirement("quick", 1, ("ops",)),
    ]
    assert decision.timeout_minutes == 30  # `board` has the default 60


def test_default_timeout_is_24_hours(build: Any, decide: Any) -> None:
    assert decide(build(rule("e", "ESCALATE")), {}).timeout_minutes == 1440


def test_deny_drops_approval_requirements(build: Any, decide: Any) -> None:
    decision = decide(build(rule("e", "ESCALATE"), rule("d", "DENY")), {})
    assert decision.decision == "DENY"
    assert decision.approvals_required is None
    assert decision.timeout_minutes is None


@pytest.mark.parametrize(("default", "want"), [(None, "DENY"), ("DENY", "DENY"), ("ALLOW", "ALLOW")])
def test_default_applies_when_nothing_matches(
    build: Any, decide: Any, default: str | None, want: str
) -> None:
    top = {} if default is None else {"default": default}
    decision = decide(build(rule("never", "ALLOW", match={"action.x": {"eq": 1}}), **top), {})
    assert decision == Decision(
        decision=want,
        reason="no_rule_matched",
        matched_rules=[],
        approvals_required=None,
        timeout_minutes=None,
        checks=[Check("never", False, None, ["action.x <missing> == 1: not matched"])],
    )


def test_an_error_is_a_deny_that_beats_allow_and_escalate(build: Any, decide: Any) -> None:
    policy = build(
        rule("allow", "ALLOW"),
        rule("escalate", "ESCALATE"),
        rule("broken", "ALLOW", match={"action.amount": {"gt": "1"}}),
        rule("broken-2", "ESCALATE", match={"action.amount": {"lt": "1"}}),
    )
    decision = decide(policy, {"amount": "one"})
    assert decision.decision == "DENY"
    assert decision.reason == "policy_error:broken"
    assert decision.matched_rules == ["allow", "escalate", "broken", "broken-2"]
    assert [check.error is not None for check in decision.checks] == [False, False, True, True]


def test_an_erroring_allow_rule_never_allows(build: Any, decide: Any) -> None:
    decision = decide(
        build(rule("only", "ALLOW", match={"action.amount": {"lt": "100"}}), default="ALLOW"), {}
    )
    assert (decision.decision, decision.reason) == ("DENY", "policy_error:only")


def test_a_real_deny_reason_wins_over_a_later_error(build: Any, decide: Any) -> None:
    policy = build(
        rule("blocked", "DENY", reason="blocked"), rule("broken", "ALLOW", match={"action.a": {"gt": 1}})
    )
    assert decide(policy, {}).reason == "blocked"


def test_a_false_condition_outweighs_an_error_in_the_same_rule(build: Any, decide: Any) -> None:
    # Like CEL's &&: false && error is false, whichever comes first.
    amount_first = {"action.amount": {"gt": "5000"}, "action.type": {"eq": "pay_invoice"}}
    type_first = {"action.type": {"eq": "pay_invoice"}, "action.amount": {"gt": "5000"}}
    for match in (amount_first, type_first):
        policy = build(rule("r", "DENY", match=match), default="ALLOW")
        assert decide(policy, {"type": "trade"}).decision == "ALLOW"
        assert decide(policy, {"type": "pay_invoice"}).reason == "policy_error:r"
    check = decide(build(rule("r", "DENY", match=amount_first)), {"type": "trade"}).checks[0]
    assert check.matched is False
    assert check.error is None
    assert check.conditions[0].startswith("action.amount <missing> >")
    assert check.conditions[1] == 'action.type "trade" == "pay_invoice": not matched'


def test_first_false_condition_stops_the_rule(build: Any, decide: Any) -> None:
    policy = build(rule("r", "DENY", match={"action.a": {"eq": 1}, "action.b": {"eq": 2}}))
    assert decide(policy, {"a": 0, "b": 2}).checks[0].conditions == ["action.a 0 == 1: not matched"]


def test_every_rule_gets_a_check_in_document_order(build: Any, decide: Any) -> None:
    policy = build(
        rule("one", "ALLOW"), rule("two", "DENY", match={"action.x": {"eq": 1}}), rule("three", "ALLOW")
    )
    decision = decide(policy, {})
    assert [(check.rule, check.matched) for check in decision.checks] == [
        ("one", True),
        ("two", False),
        ("three", True),
    ]


def test_example_policy_decisions(example_yaml: bytes, decide: Any) -> None:
    policy = load_policy(example_yaml, "application/yaml").compiled
    assert policy.verdict_ttl_seconds == 60
    allow = decide(policy, {"type": "pay_invoice", "amount": "120.00", "vendor": "acme"})
    assert (allow.decision, allow.reason, allow.matched_rules) == ("ALLOW", "allow-rest", ["allow-rest"])
    escalate = decide(policy, {"type": "pay_invoice", "amount": "7800.00", "vendor": "acme"})
    assert (escalate.decision, escalate.reason) == ("ESCALATE", "amount_above_threshold")
    assert escalate.approvals_required == [ApprovalRequirement("cfo-over-5k", 1, ("cfo",))]
    big = decide(policy, {"type": "pay_invoice", "amount": "50000.01", "vendor": "acme"})
    assert big.approvals_required == [
        ApprovalRequirement(
            "execs-over-50k",
            2,
            (
                "cfo",
                "controller",
                "ceo",
            ),
        )
    ]
    blocked = decide(policy, {"type": "pay_invoice", "amount": "7800.00", "vendor": "evil-corp"})
    assert (blocked.decision, blocked.reason) == ("DENY", "vendor_blocked")
    no_amount = decide(policy, {"type": "send_email"})
    assert (no_amount.decision, no_amount.reason) == ("DENY", "policy_error:execs-over-50k")


def test_decision_encodes_to_json(build: Any, decide: Any) -> None:
    decision = decide(build(rule("e", "ESCALATE")), {})
    assert msgspec.json.decode(msgspec.json.encode(decision)) == {
        "decision": "ESCALATE",
        "reason": "e",
        "matched_rules": ["e"],
        "approvals_required": [{"rule": "e", "threshold": 1, "roles": ["cfo"]}],
        "timeout_minutes": 1440,
        "checks": [{"rule": "e", "matched": True, "error": None, "conditions": []}],
    }


def test_approval_requirements_cannot_be_changed_by_a_caller(build: Any, decide: Any) -> None:
    policy = build(rule("e", "ESCALATE"))
    first = decide(policy, {})
    assert first.approvals_required is not None
    with pytest.raises(AttributeError):
        first.approvals_required[0].roles.append("intruder")  # a tuple in a frozen struct
    first.approvals_required.append(ApprovalRequirement("x", 1, ("intruder",)))
    second = decide(policy, {})
    assert second.approvals_required == [ApprovalRequirement("e", 1, ("cfo",))]


def test_compiled_policy_ignores_later_changes_to_the_document(decide: Any) -> None:
    from policy import compile_document

    document = {
        "schema": "verdict.policy/v1",
        "lists": {"blocked": ["evil"]},
        "rules": [rule("r", "DENY", match={"action.v": {"in": "blocked"}}), rule("rest", "ALLOW")],
    }
    policy = compile_document(document)
    document["lists"]["blocked"].append("good")
    document["rules"].clear()
    assert decide(policy, {"v": "good"}).decision == "ALLOW"
    assert decide(policy, {"v": "evil"}).decision == "DENY"
