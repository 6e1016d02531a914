"""`when` expressions: time-zone functions, runtime errors, validation, and what each evaluation converts."""

from __future__ import annotations

import datetime
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import PolicyInvalid
from policy.cel_env import TIME_FUNCTIONS, CelScope, compile_expression, resolve_time_zone, run_expression

UTC = datetime.UTC


def at(*fields: int) -> datetime.datetime:
    return datetime.datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def when_rule(source: str, decision: str = "DENY") -> dict[str, Any]:
    return {"id": "r", "decision": decision, "reason": "hit", "when": source}


def evaluate_when(
    build: Any, decide: Any, source: str, action: dict[str, Any] | None = None, **kw: Any
) -> str:
    """ "hit", "miss" or the error message."""
    lists = kw.pop("lists", {"blocked": ["evil"]})
    decision = decide(build(when_rule(source), default="ALLOW", lists=lists), action or {}, **kw)
    if decision.reason == "policy_error:r":
        error = decision.checks[0].error
        assert error is not None
        return error
    return "hit" if decision.reason == "hit" else "miss"


NIGHT = 'action.type == "trade_execution" && now.getHours("UTC") >= 22'


@pytest.mark.parametrize(
    ("now", "kind", "want"),
    [
        (at(2024, 5, 1, 21, 59, 59), "trade_execution", "miss"),
        (at(2024, 5, 1, 22, 0), "trade_execution", "hit"),
        (at(2024, 5, 1, 23, 59), "trade_execution", "hit"),
        (at(2024, 5, 2, 0, 0), "trade_execution", "miss"),
        (at(2024, 5, 1, 23, 0), "pay_invoice", "miss"),
    ],
)
def test_night_trades(build: Any, decide: Any, now: datetime.datetime, kind: str, want: str) -> None:
    assert evaluate_when(build, decide, NIGHT, {"type": kind}, now=now) == want


def test_now_given_in_another_offset_is_read_as_utc(build: Any, decide: Any) -> None:
    berlin_midnight = datetime.datetime(
        2024, 5, 2, 0, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert evaluate_when(build, decide, "now.getHours() == 22", now=berlin_midnight) == "hit"
    assert evaluate_when(build, decide, 'now.getHours("UTC") == 22', now=berlin_midnight) == "hit"


@pytest.mark.parametrize(
    ("zone", "now", "hours"),
    [
        # Europe/Berlin springs forward at 01:00 UTC on 2024-03-31 (02:00 CET -> 03:00 CEST).
        ("Europe/Berlin", at(2024, 3, 31, 0, 59), 1),
        ("Europe/Berlin", at(2024, 3, 31, 1, 0), 3),
        # ... and falls back at 01:00 UTC on 2024-10-27 (03:00 CEST -> 02:00 CET).
        ("Europe/Berlin", at(2024, 10, 27, 0, 59), 2),
        ("Europe/Berlin", at(2024, 10, 27, 1, 0), 2),
        # America/New_York springs forward at 07:00 UTC on 2024-03-10 (02:00 EST -> 03:00 EDT).
        ("America/New_York", at(2024, 3, 10, 6, 59), 1),
        ("America/New_York", at(2024, 3, 10, 7, 0), 3),
        ("+05:30", at(2024, 1, 1, 20, 0), 1),
        ("-08:00", at(2024, 1, 1, 3, 0), 19),
        ("UTC", at(2024, 1, 1, 3, 0), 3),
    ],
)
def test_get_hours_in_a_time_zone(
    build: Any, decide: Any, zone: str, now: datetime.datetime, hours: int
) -> None:
    assert evaluate_when(build, decide, f'now.getHours("{zone}") == {hours}', now=now) == "hit"


def test_local_date_parts_across_midnight(build: Any, decide: Any) -> None:
    # 2024-03-31T23:30Z is Monday 2024-04-01 01:30 in Berlin: day of week 1, month index 3, day index 0.
    now = at(2024, 3, 31, 23, 30)
    source = (
        'now.getDayOfWeek("Europe/Berlin") == 1 && now.getDayOfWeek() == 0'
        ' && now.getMonth("Europe/Berlin") == 3 && now.getDayOfMonth("Europe/Berlin") == 0'
        ' && now.getDate("Europe/Berlin") == 1 && now.getDayOfYear("Europe/Berlin") == 91'
        ' && now.getFullYear("Pacific/Kiritimati") == 2024 && now.getMinutes("+05:45") == 15'
    )
    assert evaluate_when(build, decide, source, now=now) == "hit"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2200, 1, 1)))
def test_time_functions_agree_with_the_native_utc_accessors(moment: datetime.datetime) -> None:
    # The cel library's zero-argument accessors follow the CEL spec; ours must agree with them in UTC.
    moment = moment.replace(tzinfo=UTC)
    for name, function in TIME_FUNCTIONS.items():
        native = cel.evaluate(f"now.{name}()", {"now": moment})
        assert function(moment, "UTC") == native, name
        assert function(moment) == native, name


def test_zero_argument_builtins_still_work_beside_the_registered_functions(build: Any, decide: Any) -> None:
    source = 'duration("90m").getHours() == 1 && now.getMinutes() == 7 && getHours(now) == 12'
    assert evaluate_when(build, decide, source, now=at(2024, 5, 1, 12, 7)) == "hit"


def test_time_zone_from_the_request_is_checked_at_evaluation(build: Any, decide: Any) -> None:
    source = "now.getHours(action.zone) == 12"
    assert evaluate_when(build, decide, source, {"zone": "UTC"}) == "hit"
    assert "unknown time zone 'Mars/Olympus'" in evaluate_when(
        build, decide, source, {"zone": "Mars/Olympus"}
    )
    assert "CEL error" in evaluate_when(build, decide, source, {"zone": 5})


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "utc", "", "../etc/passwd", "/etc/passwd", "+24:00", "+5:30"]
)
def test_unknown_time_zones(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        resolve_time_zone(zone)


@pytest.mark.parametrize(
    ("source", "action", "fragment"),
    [
        ("action.missing == 1", {}, "no such key"),
        ("action.amount > 5000", {"amount": "7800"}, "No such overload"),
        ("action.amount", {"amount": "7800"}, "must evaluate to a bool, got a string"),
        ("1 / action.n == 1", {"n": 0}, "division by zero"),
        ("action.big == 1", {"big": 2**64}, "outside CEL's 64-bit range"),
        ("action.items[3] == 1", {"items": [1]}, "CEL error"),
        ("action.obj == 1", {"obj": object()}, "CEL error"),
    ],
)
def test_runtime_errors_deny(
    build: Any, decide: Any, source: str, action: dict[str, Any], fragment: str
) -> None:
    decision = decide(build(when_rule(source, decision="ALLOW")), action)
    assert (decision.decision, decision.reason) == ("DENY", "policy_error:r")
    assert decision.matched_rules == ["r"]
    error = decision.checks[0].error
    assert error is not None and fragment in error
    line = decision.checks[0].conditions[0]
    assert line.startswith(f"when {source} [action.") and line.endswith(f"]: error: {error}")


def test_naive_now_is_an_error_only_for_rules_reading_now(build: Any, decide: Any) -> None:
    policy = build(
        {"id": "clock", "decision": "ALLOW", "when": "now.getHours() >= 0"},
        {"id": "plain", "decision": "ALLOW", "when": 'action.type == "x"'},
    )
    naive = datetime.datetime(2024, 5, 1, 12)
    decision = decide(policy, {"type": "x"}, now=naive)
    assert [check.error is not None for check in decision.checks] == [True, True]  # one context, one failure
    plain = build({"id": "plain", "decision": "ALLOW", "when": 'action.type == "x"'})
    assert decide(plain, {"type": "x"}, now=naive).decision == "ALLOW"


def test_when_runs_only_when_match_holds(build: Any, decide: Any) -> None:
    rule = {
        "id": "r",
        "decision": "DENY",
        "match": {"action.type": {"eq": "trade"}},
        "when": "action.missing",
    }
    decision = decide(build(rule, default="ALLOW"), {"type": "other"})
    assert decision.decision == "ALLOW"
    assert decision.checks[0].conditions == ['action.type "other" == "trade": not matched']


def test_false_when_outweighs_a_match_error(build: Any, decide: Any) -> None:
    rule = {"id": "r", "decision": "DENY", "match": {"action.amount": {"gt": "1"}}, "when": "false"}
    assert decide(build(rule, default="ALLOW"), {}).decision == "ALLOW"


def test_when_reads_agent_tenant_and_lists(build: Any, decide: Any) -> None:
    source = 'agent.name == "payments-bot" && tenant.id == "tenant-1" && action.vendor in lists.blocked'
    assert evaluate_when(build, decide, source, {"vendor": "evil"}) == "hit"
    assert evaluate_when(build, decide, source, {"vendor": "good"}) == "miss"
    assert (
        evaluate_when(build, decide, "lists.blocked.exists(v, v == action.vendor)", {"vendor": "evil"})
        == "hit"
    )


# ---- validation of `when`


def problems_of(source: str, lists: tuple[str, ...] = ("blocked",)) -> list[str]:
    return compile_expression(source, lists)[1]


@pytest.mark.parametrize(
    "source",
    [
        NIGHT,
        "[1, 2].exists(x, x > 1) && action.items.all(item, item.price > 0)",
        "type(action.x) == int || type(action.x) == string || type(action.x) == map",
        'optional.of(1).hasValue() && size("abc") == 3 && "abc".startsWith("a") && "a".matches("a")',
        'has(action.x) && timestamp("2024-01-01T00:00:00Z") < now && duration("1h") > duration("1m")',
        "action.x.exists_one(x, x == 1) && action.x.map(x, x * 2).filter(y, y > 2).size() > 0",
        'now.getDayOfWeek("America/New_York") == 0 && now.getHours("+05:30") == 1',
        'lists.blocked.size() > 0 && action["weird-key"] == 1 // a comment with "quotes" and lists.nope',
    ],
)
def test_valid_expressions(source: str) -> None:
    assert problems_of(source) == []


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("action.", "CEL syntax error"),
        ("action.type ==", "CEL syntax error"),
        ("request.amount > 1", "unknown variable 'request'"),
        ("actoin.type == 1 && agnet.id == 1", "unknown variable 'actoin'"),
        ("now.getHour() == 1", "unknown function 'getHour'"),
        ("lowerAscii(action.x) == 'a'", "unknown function 'lowerAscii'"),
        ("action.vendor in lists.blokced", "unknown list 'lists.blokced'"),
        ('now.getHours("Europe/Berln") == 1', "unknown time zone 'Europe/Berln'"),
    ],
)
def test_invalid_expressions(source: str, fragment: str) -> None:
    assert any(fragment in problem for problem in problems_of(source)), problems_of(source)


def test_unknown_variables_are_all_reported() -> None:
    problems = problems_of("actoin.type == 1 && agnet.id == 1")
    assert [p for p in problems if "unknown variable" in p] == [
        "unknown variable 'actoin'; a `when` may read action, agent, tenant, lists, now, risk, classification and context",
        "unknown variable 'agnet'; a `when` may read action, agent, tenant, lists, now, risk, classification and context",
    ]


def test_type_names_and_functions_accepted_by_validation_exist_at_runtime() -> None:
    # Guards the allow-lists in cel_env against drifting from the cel library.
    source = (
        "type(1) == int && type(1u) == uint && type(1.0) == double && type('') == string"
        " && type(b'') == bytes && type(true) == bool && type([]) == list && type({}) == map"
        " && type(null) == null_type && type(int) == type && optional.none().orValue(1) == 1"
        " && optional.ofNonZeroValue(1).value() == 1 && optional.of(1).or(optional.none()).hasValue()"
        " && dyn(1) == 1 && string(1) == '1' && int('1') == 1 && uint(1) == 1u && double(1) == 1.0"
        " && bytes('a') == b'a' && 'ab'.contains('a') && 'ab'.endsWith('b')"
    )
    assert problems_of(source) == []
    assert cel.evaluate(source) is True


def test_when_problems_carry_path_and_rule(build: Any) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        build({"id": "ok", "decision": "ALLOW", "match": {}}, when_rule("request.x == 1"))
    assert [(p.path, p.rule) for p in caught.value.problems] == [("rules[1].when", "r")]


# ---- what each evaluation hands to CEL


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        (NIGHT, {"action": {"type"}}),
        ('action.a == 1 && has(action.b.c) && agent.id == "x"', {"action": {"a", "b"}, "agent": {"id"}}),
        ('action["a"] == 1', {"action": None}),
        ("size(action) > 0", {"action": None}),
        ("action.all(k, k == 'a')", {"action": None}),
        ("[1].exists(action, action == 1)", {"action": None}),
        ("action.x in lists.blocked && 'lists.other' != 'action.y'", {"action": {"x"}, "lists": {"blocked"}}),
        ('r"action.y" == action.x', {"action": {"x"}}),
        ("'''action.y''' == action.x", {"action": {"x"}}),
        ('"\\"action.y" == action.x', {"action": {"x"}}),
        ("tenant.name.startsWith('a')", {"tenant": {"name"}}),
    ],
)
def test_reads_are_narrowed_only_for_plain_field_selections(
    source: str, reads: dict[str, set[str] | None]
) -> None:
    expression, problems = compile_expression(source, ["blocked", "other"])
    assert problems == []
    assert expression is not None
    assert {root: None if keys is None else set(keys) for root, keys in expression.reads.items()} == reads


NARROWING_CASES = [
    NIGHT,
    'has(action.b) && action.b.c == 2 || agent.name == "bot"',
    "action.items.exists(i, i.price > 10) && action.vendor in lists.blocked",
    "size(action) == 3",
    '"action.type" == action.type',
    "has(action.missing)",
    "action.missing == 1",
]
ACTIONS = [
    {"type": "trade_execution", "b": {"c": 2}, "items": [{"price": 11}], "vendor": "evil"},
    {"type": "pay", "items": [], "vendor": "good"},
    {},
]


@pytest.mark.parametrize("source", NARROWING_CASES)
@pytest.mark.parametrize("action", ACTIONS)
def test_narrowed_context_gives_the_same_result_as_the_full_one(source: str, action: dict[str, Any]) -> None:
    expression, problems = compile_expression(source, ["blocked"])
    assert expression is not None and not problems
    lists = {"blocked": ["evil"]}
    agent, tenant, now = {"id": "a", "name": "bot"}, {"id": "t", "name": "acme"}, at(2024, 5, 1, 23)
    narrowed = CelScope([expression], lists).build_context(action, agent, tenant, now)
    full = {"action": action, "agent": agent, "tenant": tenant, "lists": lists, "now": now}
    context = cel.Context(full, TIME_FUNCTIONS)

    def outcome(run: Any) -> Any:
        try:
            return run()
        except Exception as error:  # the comparison is the point, not the kind
            return type(error).__name__

    assert outcome(lambda: run_expression(expression, narrowed)) == outcome(
        lambda: run_expression(expression, context)
    )
