"""Risk scores and levels, and resource classifications."""

from __future__ import annotations

from typing import Any

import pytest

from policy import PolicyInvalid, compile_document

from .conftest import make_document

ALLOW_ALL = {"id": "allow", "decision": "ALLOW", "match": {}}
FACTORS = [
    {"name": "large", "match": {"action.amount": {"gt": "10000"}}, "score": 30},
    {"name": "new-vendor", "match": {"context.vendor.first_seen": {"eq": True}}, "score": 40},
    {"name": "weekend", "when": "is_weekend(now)", "score": 20},
]
CLASSES = {
    "payroll": {"tier": "restricted", "risk_modifier": "1.5"},
    "site": {"tier": "public", "risk_modifier": "0.5"},
}


def risky(*rules: dict[str, Any], **top: Any) -> Any:
    return compile_document(make_document(*rules, ALLOW_ALL, risk={"factors": FACTORS}, **top))


def evaluate(policy: Any, action: dict[str, Any], context: Any = None) -> Any:
    from policy import EvaluationInput

    from .conftest import AGENT, NOON, TENANT

    request = EvaluationInput(action, AGENT, TENANT, NOON, context=context)
    decision = policy.evaluate(request)
    assert policy.evaluate(request, explain=False).risk == decision.risk
    return decision


def test_score_is_the_sum_of_matched_factors() -> None:
    decision = evaluate(risky(), {"amount": "20000"}, {"vendor": {"first_seen": True}})
    assert decision.risk is not None
    assert (decision.risk.score, decision.risk.level) == (70, "high")
    assert [(f.name, f.score) for f in decision.risk.factors] == [("large", 30), ("new-vendor", 40)]
    assert decision.context == {"vendor.first_seen": True}


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0, "low"),
        (39, "low"),
        (40, "medium"),
        (69, "medium"),
        (70, "high"),
        (84, "high"),
        (85, "critical"),
        (100, "critical"),
    ],
)
def test_default_bands(score: int, level: str) -> None:
    factors = [{"name": "x", "match": {}, "score": score}]
    policy = compile_document(make_document(ALLOW_ALL, risk={"factors": factors}))
    decision = evaluate(policy, {})
    assert (decision.risk.score, decision.risk.level) == (score, level)


def test_score_is_capped_at_100_and_bands_are_configurable() -> None:
    factors = [{"name": "a", "match": {}, "score": 80}, {"name": "b", "match": {}, "score": 80}]
    policy = compile_document(
        make_document(ALLOW_ALL, risk={"factors": factors, "bands": {"critical": 101 - 1}})
    )
    assert evaluate(policy, {}).risk.score == 100


def test_a_factor_in_error_counts_its_score() -> None:
    decision = evaluate(risky(), {"amount": 12.5})
    assert decision.risk.score == 30
    assert decision.decision == "ALLOW"  # the factor's error does not deny by itself


def test_rules_match_on_risk_score_and_level() -> None:
    deny_high = {"id": "deny-high", "decision": "DENY", "match": {"risk.level": {"in": ["high", "critical"]}}}
    cel_rule = {"id": "cel", "decision": "DENY", "reason": "cel_risk", "when": "risk.score >= 30"}
    assert (
        evaluate(risky(deny_high), {"amount": "20000"}, {"vendor": {"first_seen": True}}).reason
        == "deny-high"
    )
    assert evaluate(risky(cel_rule), {"amount": "20000"}).reason == "cel_risk"
    assert evaluate(risky(cel_rule), {"amount": "2"}).decision == "ALLOW"


def test_classification_overrides_agent_sensitivity_and_modifies_risk() -> None:
    policy = risky(classifications=CLASSES)
    decision = evaluate(policy, {"amount": "20000", "resource_type": "payroll", "data_sensitivity": "public"})
    assert decision.classification is not None
    assert (decision.classification.tier, decision.classification.source) == ("restricted", "policy")
    assert decision.risk.score == 45  # 30 x 1.5
    assert evaluate(policy, {"amount": "20000", "resource_type": "site"}).risk.score == 15


def test_unknown_resource_type_is_critical_with_modifier_1_5() -> None:
    policy = risky(classifications=CLASSES)
    decision = evaluate(policy, {"amount": "20000", "resource_type": "mystery"})
    assert (decision.classification.tier, decision.classification.risk_modifier) == ("critical", "1.5")
    assert decision.classification.source == "unknown"
    assert decision.risk.score == 45


def test_agent_sensitivity_stands_without_resource_type(build: Any) -> None:
    policy = risky(classifications=CLASSES)
    assert evaluate(policy, {"data_sensitivity": "internal"}).classification.tier == "internal"
    assert evaluate(policy, {"data_sensitivity": "meh"}).classification.tier == "critical"
    assert evaluate(policy, {}).classification is None


def test_rules_match_on_classification_tier() -> None:
    rule = {"id": "restricted", "decision": "DENY", "match": {"classification.tier": {"eq": "restricted"}}}
    policy = compile_document(make_document(rule, ALLOW_ALL, classifications=CLASSES))
    assert evaluate(policy, {"resource_type": "payroll"}).decision == "DENY"
    assert evaluate(policy, {"resource_type": "site"}).decision == "ALLOW"


def test_modifier_rounds_up() -> None:
    factors = [{"name": "x", "match": {}, "score": 5}]
    policy = compile_document(
        make_document(
            ALLOW_ALL,
            risk={"factors": factors},
            classifications={"r": {"tier": "public", "risk_modifier": "1.1"}},
        )
    )
    assert evaluate(policy, {"resource_type": "r"}).risk.score == 6  # 5.5 -> 6, never understated


@pytest.mark.parametrize(
    ("top", "path", "fragment"),
    [
        (
            {"risk": {"factors": [{"name": "x", "match": {"risk.score": {"gt": 1}}, "score": 1}]}},
            "risk.factors[0].match.risk.score",
            "factors make",
        ),
        (
            {"risk": {"factors": [{"name": "x", "when": "risk.score > 1", "score": 1}]}},
            "risk.factors[0].when",
            "factors make",
        ),
        (
            {"risk": {"factors": [{"name": "x", "match": {}, "score": 101}]}},
            "risk.factors[0].score",
            "0 to 100",
        ),
        (
            {
                "risk": {
                    "factors": [
                        {"name": "x", "match": {}, "score": 1},
                        {"name": "x", "match": {}, "score": 1},
                    ]
                }
            },
            "risk.factors[1].name",
            "duplicate",
        ),
        ({"risk": {"factors": [], "bands": {"medium": 80}}}, "risk.bands", "rise strictly"),
        ({"risk": {"factors": [], "bands": {"low": 1}}}, "risk.bands.low", "unknown field"),
        (
            {"risk": {"factors": [{"name": "x", "match": {"action.a": {"gt": 1.5}}, "score": 1}]}},
            "risk.factors[0].match.action.a.gt",
            "float",
        ),
        (
            {"classifications": {"db": {"tier": "secret", "risk_modifier": "1"}}},
            "classifications.db.tier",
            "one of",
        ),
        (
            {"classifications": {"db": {"tier": "public", "risk_modifier": 1.5}}},
            "classifications.db.risk_modifier",
            "float",
        ),
        (
            {"classifications": {"db": {"tier": "public", "risk_modifier": "11"}}},
            "classifications.db.risk_modifier",
            "from 0 to 10",
        ),
        ({"classifications": {"db": {"tier": "public"}}}, "classifications.db.risk_modifier", "required"),
    ],
)
def test_invalid_risk_and_classifications(top: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(make_document(ALLOW_ALL, **top))
    assert any(p.path == path and fragment in p.message for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        (
            {"id": "r", "decision": "DENY", "match": {"risk.level": {"eq": "high"}}},
            "rules[0].match.risk.level",
        ),
        ({"id": "r", "decision": "DENY", "when": "risk.score > 3"}, "rules[0].when"),
        (
            {"id": "r", "decision": "DENY", "match": {"classification.tier": {"eq": "x"}}},
            "rules[0].match.classification.tier",
        ),
    ],
)
def test_risk_and_classification_need_their_sections(rule: dict[str, Any], path: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(make_document(rule))
    problem = caught.value.problems[0]
    assert (problem.path, problem.rule) == (path, "r")
    assert "section" in problem.message


def test_rules_see_the_risk_level_factors_made_while_other_fields_stay_rendered() -> None:
    by_type = {"name": "payment", "match": {"action.type": {"eq": "pay"}}, "score": 75}
    deny_high = {"id": "deny-high", "decision": "DENY", "match": {"risk.level": {"eq": "high"}}}
    pay = {"id": "pay", "decision": "ALLOW", "match": {"action.type": {"eq": "pay"}}}
    policy = compile_document(make_document(deny_high, pay, risk={"factors": [by_type]}))
    decision = evaluate(policy, {"type": "pay"})
    assert decision.reason == "deny-high"
    assert [check.conditions for check in decision.checks] == [
        ['action.type "pay" == "pay": matched'],
        ['risk.level "high" == "high": matched'],
        ['action.type "pay" == "pay": matched'],
    ]
