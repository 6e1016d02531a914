"""Validation collects every problem, each with its path and rule id."""

from __future__ import annotations

from typing import Any

import pytest

from policy import PolicyInvalid, Problem, compile_document
from policy.validate import validate_document

SCHEMA = "verdict.policy/v1"


def problems(document: Any) -> list[tuple[str, str | None]]:
    return [(p.path, p.rule) for p in validate_document(document)]


def messages(document: Any) -> dict[str, str]:
    return {p.path: p.message for p in validate_document(document)}


def doc(*rules: Any, **top: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "rules": list(rules), **top}


ALLOW_ALL = {"id": "allow-all", "decision": "ALLOW", "match": {}}


def test_many_problems_are_collected_with_paths_and_rule_ids() -> None:
    document = {
        "schema": "verdict.policy/v2",
        "default": "MAYBE",
        "verdict_ttl_seconds": 0,
        "lists": {"vendors": ["a"], "Bad-Name": ["b"]},
        "colour": "blue",
        "rules": [
            {"id": "block", "decision": "DENY", "match": {"action.vendor": {"in": "vendorz"}}},
            {
                "id": "cfo-over-5k",
                "decision": "ESCALATE",
                "match": {"action.amount": {"gt": 5000.5, "between": [1, 2]}, "actor.id": {"eq": "x"}},
                "approvals": {"threshold": 40, "roles": ["cfo", "CFO", "cfo"]},
                "timeout_minutes": 0,
            },
            {
                "id": "block",
                "decision": "deny",
                "when": "request.x > 1",
                "approvals": {"threshold": 1, "roles": ["a"]},
            },
            {"id": "Bad Id", "decision": "ALLOW", "match": {}, "extra": 1, "timeout_minutes": 5},
        ],
    }
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(document)
    found = [(p.path, p.rule) for p in caught.value.problems]
    assert found == [
        ("colour", None),
        ("schema", None),
        ("default", None),
        ("verdict_ttl_seconds", None),
        ("lists.Bad-Name", None),
        ("rules[0].match.action.vendor.in", "block"),
        ("rules[1].match.action.amount.gt", "cfo-over-5k"),
        ("rules[1].match.action.amount.between", "cfo-over-5k"),
        ("rules[1].match.actor.id", "cfo-over-5k"),
        ("rules[1].approvals.roles[1]", "cfo-over-5k"),
        ("rules[1].approvals.roles[2]", "cfo-over-5k"),
        ("rules[1].approvals.threshold", "cfo-over-5k"),
        ("rules[1].timeout_minutes", "cfo-over-5k"),
        ("rules[2].id", "block"),
        ("rules[2].decision", "block"),
        ("rules[2].when", "block"),
        ("rules[3].extra", "Bad Id"),
        ("rules[3].id", "Bad Id"),
        ("rules[3].timeout_minutes", "Bad Id"),
    ]
    by_path = {p.path: p.message for p in caught.value.problems}
    assert (
        "quote" in by_path["rules[1].match.action.amount.gt"]
        or "decimal" in by_path["rules[1].match.action.amount.gt"]
    )
    assert "float" in by_path["rules[1].match.action.amount.gt"]
    assert "unknown operator 'between'" in by_path["rules[1].match.action.amount.between"]
    assert "unknown list 'vendorz'" in by_path["rules[0].match.action.vendor.in"]
    assert "duplicate rule id (also rules[0])" == by_path["rules[2].id"]
    assert "duplicate role 'cfo'" == by_path["rules[1].approvals.roles[2]"]
    assert "unknown variable 'request'" in by_path["rules[2].when"]
    assert "must be from 1 to 3" in by_path["rules[1].approvals.threshold"]


def test_problem_as_dict() -> None:
    problem = Problem(path="rules[1].match.action.amount.gt", rule="cfo-over-5k", message="m")
    assert problem.as_dict() == {
        "path": "rules[1].match.action.amount.gt",
        "rule": "cfo-over-5k",
        "message": "m",
    }


@pytest.mark.parametrize(
    ("document", "want"),
    [
        ([], [("", None)]),
        ("schema", [("", None)]),
        ({}, [("schema", None), ("rules", None)]),
        ({"schema": SCHEMA, "rules": []}, [("rules", None)]),
        ({"schema": SCHEMA, "rules": {}}, [("rules", None)]),
        (doc("rule"), [("rules[0]", None)]),
        (doc({}), [("rules[0].id", None), ("rules[0].decision", None), ("rules[0]", None)]),
        (doc({"id": 5, "decision": "ALLOW", "match": {}}), [("rules[0].id", None)]),
        (doc({"id": "r", "decision": "ALLOW"}), [("rules[0]", "r")]),
        (
            doc({"id": "r", "decision": "ALLOW", "match": {}, "reason": "Not A Code"}),
            [("rules[0].reason", "r")],
        ),
        (
            doc({"id": "r", "decision": "ALLOW", "match": {}, "reason": "policy_error:x"}),
            [("rules[0].reason", "r")],
        ),
        (doc({"id": "r", "decision": "ALLOW", "match": []}), [("rules[0].match", "r")]),
        (
            doc({"id": "r", "decision": "ALLOW", "match": {"action.x": {}}}),
            [("rules[0].match.action.x", "r")],
        ),
        (
            doc({"id": "r", "decision": "ALLOW", "match": {"action.x": "a"}}),
            [("rules[0].match.action.x", "r")],
        ),
        (doc({"id": "r", "decision": "ALLOW", "when": ""}), [("rules[0].when", "r")]),
        (doc({"id": "r", "decision": "ALLOW", "when": True}), [("rules[0].when", "r")]),
        (doc(ALLOW_ALL, lists=[]), [("lists", None)]),
        (doc(ALLOW_ALL, lists={"a": "x"}), [("lists.a", None)]),
        (doc(ALLOW_ALL, verdict_ttl_seconds=3601), [("verdict_ttl_seconds", None)]),
        (doc(ALLOW_ALL, verdict_ttl_seconds=True), [("verdict_ttl_seconds", None)]),
        (doc(ALLOW_ALL, verdict_ttl_seconds=60.0), [("verdict_ttl_seconds", None)]),
        (doc(ALLOW_ALL, verdict_ttl_seconds="60"), [("verdict_ttl_seconds", None)]),
    ],
)
def test_structure_problems(document: Any, want: list[tuple[str, str | None]]) -> None:
    assert problems(document) == want


@pytest.mark.parametrize("default", ["ALLOW", "DENY"])
def test_allow_and_deny_are_valid_defaults(default: str) -> None:
    assert problems(doc(ALLOW_ALL, default=default)) == []


def test_escalate_default_is_refused_because_it_names_no_approvers() -> None:
    found = problems(doc(ALLOW_ALL, default="ESCALATE"))
    assert [path for path, _ in found] == ["default"]


@pytest.mark.parametrize("ttl", [1, 60, 3600])
def test_ttl_bounds(ttl: int) -> None:
    assert problems(doc(ALLOW_ALL, verdict_ttl_seconds=ttl)) == []


@pytest.mark.parametrize("rule_id", ["a", "0", "cfo-over-5k", "rule.v2_final", "a" * 64])
def test_valid_rule_ids(rule_id: str) -> None:
    assert problems(doc({"id": rule_id, "decision": "ALLOW", "match": {}})) == []


@pytest.mark.parametrize("rule_id", ["", "-a", "_a", "A", "a b", "a" * 65, "ä", "a:b"])
def test_invalid_rule_ids(rule_id: str) -> None:
    assert problems(doc({"id": rule_id, "decision": "ALLOW", "match": {}})) == [("rules[0].id", rule_id)]


@pytest.mark.parametrize(
    "field",
    [
        "action",
        "action.",
        "action..x",
        "action.a b",
        "agent.role",
        "tenant",
        "tenant.plan",
        "now",
        "x.y",
        "",
        "action.k.k.k.k.k.k.k.k.k",
    ],
)
def test_unknown_field_paths(field: str) -> None:
    document = doc({"id": "r", "decision": "ALLOW", "match": {field: {"eq": 1}}})
    assert problems(document) == [(f"rules[0].match.{field}", "r")]
    assert "unknown field path" in messages(document)[f"rules[0].match.{field}"]


@pytest.mark.parametrize(
    ("operator", "operand"),
    [
        ("gt", 5000.0),
        ("gte", "1e3"),
        ("lt", "NaN"),
        ("lte", True),
        ("gt", None),
        ("gt", [1]),
        ("gt", " 5"),
        ("in", 5),
        ("not_in", {"a": 1}),
        ("in", "no_such_list"),
        ("exists", "yes"),
        ("exists", 1),
        ("eq", 1.5),
        ("ne", {"a": [1.5]}),
        ("in", [1, 2.5]),
    ],
)
def test_operands_must_fit_their_operator(operator: str, operand: Any) -> None:
    document = doc({"id": "r", "decision": "DENY", "match": {"action.x": {operator: operand}}})
    found = problems(document)
    assert found
    assert all(path.startswith(f"rules[0].match.action.x.{operator}") and rule == "r" for path, rule in found)


@pytest.mark.parametrize(
    ("operator", "operand"),
    [
        ("gt", "5000"),
        ("gt", "-0.000000000000000000001"),
        ("lte", 5000),
        ("lt", "9" * 100),
        ("in", ["a", 1, True, None, {"k": ["v"]}]),
        ("in", "vendors"),
        ("not_in", []),
        ("exists", False),
        ("eq", {"nested": [1, "two", None]}),
        ("ne", None),
    ],
)
def test_operands_that_fit(operator: str, operand: Any) -> None:
    document = doc(
        {"id": "r", "decision": "DENY", "match": {"action.x": {operator: operand}}}, lists={"vendors": []}
    )
    assert problems(document) == []


def test_escalate_needs_approvals_and_others_must_not_have_them() -> None:
    approvals = {"threshold": 1, "roles": ["cfo"]}
    assert problems(doc({"id": "e", "decision": "ESCALATE", "match": {}})) == [("rules[0].approvals", "e")]
    assert problems(doc({"id": "a", "decision": "ALLOW", "match": {}, "approvals": approvals})) == [
        ("rules[0].approvals", "a")
    ]
    assert problems(doc({"id": "d", "decision": "DENY", "match": {}, "timeout_minutes": 5})) == [
        ("rules[0].timeout_minutes", "d")
    ]


@pytest.mark.parametrize(
    ("approvals", "paths"),
    [
        ({"threshold": 1, "roles": ["cfo"]}, []),
        ({"threshold": 2, "roles": ["cfo", "ceo"]}, []),
        ({"threshold": 0, "roles": ["cfo"]}, ["threshold"]),
        ({"threshold": 2, "roles": ["cfo"]}, []),  # two distinct signers who are both cfo
        ({"threshold": 33, "roles": ["cfo"]}, ["threshold"]),
        ({"all_of": [{"role": "cfo", "min": 1}, {"role": "controller", "min": 2}]}, []),
        ({"all_of": []}, ["all_of"]),
        ({"all_of": "cfo"}, ["all_of"]),
        ({"all_of": [{"role": "cfo"}]}, ["all_of[0].min"]),
        ({"all_of": [{"role": "cfo", "min": 0}]}, ["all_of[0].min"]),
        ({"all_of": [{"role": "cfo", "min": 1}, {"role": "cfo", "min": 1}]}, ["all_of[1].role"]),
        ({"all_of": [{"role": "Cfo", "min": 1, "max": 2}]}, ["all_of[0].max", "all_of[0].role"]),
        ({"all_of": [{"role": "cfo", "min": 1}], "threshold": 1}, ["threshold"]),
        ({"all_of": [5]}, ["all_of[0]"]),
        ({"threshold": True, "roles": ["cfo"]}, ["threshold"]),
        ({"threshold": 1, "roles": []}, ["roles"]),
        ({"threshold": 2, "roles": []}, ["roles", "threshold"]),
        ({"threshold": 1, "roles": "cfo"}, ["roles"]),
        ({"threshold": 1, "roles": ["cfo", "cfo"]}, ["roles[1]"]),
        (
            {"threshold": 1, "roles": ["Cfo", "1x", "a" * 33, 5]},
            ["roles[0]", "roles[1]", "roles[2]", "roles[3]"],
        ),
        ({"roles": ["cfo"]}, ["threshold"]),
        ({"threshold": 1}, ["roles"]),
        ({"threshold": 1, "roles": ["cfo"], "quorum": 2}, ["quorum"]),
        ([1], [""]),
    ],
)
def test_approvals(approvals: Any, paths: list[str]) -> None:
    document = doc({"id": "e", "decision": "ESCALATE", "match": {}, "approvals": approvals})
    base = "rules[0].approvals"
    assert problems(document) == [(f"{base}.{path}" if path else base, "e") for path in paths]


@pytest.mark.parametrize(
    ("minutes", "valid"), [(1, True), (43200, True), (0, False), (43201, False), (1.5, False)]
)
def test_timeout_minutes_bounds(minutes: Any, valid: bool) -> None:
    rule = {"id": "e", "decision": "ESCALATE", "match": {}, "approvals": {"threshold": 1, "roles": ["cfo"]}}
    found = problems(doc({**rule, "timeout_minutes": minutes}))
    assert found == ([] if valid else [("rules[0].timeout_minutes", "e")])


def test_list_items_and_names() -> None:
    document = doc(ALLOW_ALL, lists={"ok": ["a", 1, None], "bad": [1.5], "Upper": [], "with-dash": []})
    assert problems(document) == [("lists.bad[0]", None), ("lists.Upper", None), ("lists.with-dash", None)]


def test_an_invalid_list_name_is_still_known_to_rules() -> None:
    # One mistake, one problem: the rule that uses the list is not reported as well.
    document = doc({"id": "r", "decision": "DENY", "match": {"action.v": {"in": "Bad"}}}, lists={"Bad": []})
    assert problems(document) == [("lists.Bad", None)]
