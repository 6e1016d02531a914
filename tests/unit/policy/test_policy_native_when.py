"""Time-helper ``when``s run natively agree with CEL: across the year, DST changes and failures."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import policy.compile
from policy import EvaluationInput, compile_document
from policy.cel_env import CelScope, compile_expression
from policy.errors import RuleEvaluationError
from policy.matcher import check_when
from policy.native_when import compile_native_when

from .conftest import AGENT, TENANT, make_document

SOURCES = [
    'business_hours(now, "09:00", "17:00")',
    '!business_hours(now, "08:00", "18:00")',
    " ! business_hours( now , '22:30' , '06:15' ) ",  # spans midnight
    'business_hours(now, "00:00", "23:59")',
    'business_hours(now, "10:00", "10:00")',  # empty
    "is_weekend(now)",
    "!is_weekend(now)",
]
NOT_NATIVE = [
    'business_hours(now, "9:00", "17:00")',  # CEL raises: not HH:MM
    'business_hours(now, "09:00", "24:00")',
    'business_hours(now, "09:00", "17:00") && true',
    'business_hours(now, "09:00", "17:00") || is_weekend(now)',
    '!!business_hours(now, "09:00", "17:00")',
    'business_hours(now, r"09:00", "17:00")',
    'business_hours(now, "09:00", "17:00") // closed',
    "is_weekend(now + duration('1h'))",
    'now.getHours("Europe/Berlin") >= 9',
]
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",
    "Pacific/Chatham",
    "+05:30",
    "-08:00",
]
DST_CHANGES = [  # around each 2024 change (local dates) of the zones above
    datetime.datetime(2024, 3, 10, tzinfo=datetime.UTC),
    datetime.datetime(2024, 11, 3, tzinfo=datetime.UTC),
    datetime.datetime(2024, 3, 31, tzinfo=datetime.UTC),
    datetime.datetime(2024, 10, 27, tzinfo=datetime.UTC),
    datetime.datetime(2024, 4, 7, tzinfo=datetime.UTC),
    datetime.datetime(2024, 10, 6, tzinfo=datetime.UTC),
    datetime.datetime(2024, 4, 6, tzinfo=datetime.UTC),
    datetime.datetime(2024, 9, 29, tzinfo=datetime.UTC),
]
OFFSETS = [
    datetime.UTC,
    datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
    datetime.timezone(-datetime.timedelta(hours=7)),
]


def moments() -> list[datetime.datetime]:
    start = datetime.datetime(2024, 1, 1, 0, 0, 17, 250_000, tzinfo=datetime.UTC)
    year = [start + datetime.timedelta(minutes=263 * step) for step in range(2000)]
    near_changes = [
        change + datetime.timedelta(minutes=15 * step)
        for change in DST_CHANGES
        for step in range(-8 * 4, 40 * 4)
    ]
    every = year + near_changes
    return [moment.astimezone(OFFSETS[index % len(OFFSETS)]) for index, moment in enumerate(every)]


def run_in_cel(source: str, now: Any, tenant: Any) -> bool | str:
    expression, problems = compile_expression(source, [])
    assert expression is not None and not problems
    try:
        context = CelScope([expression], {}).build_context({}, AGENT, tenant, now)
    except RuleEvaluationError as failure:
        return failure.message
    return check_when(expression, context)


@pytest.mark.parametrize("source", SOURCES)
def test_native_helpers_agree_with_cel_across_the_year_and_dst_changes(source: str) -> None:
    native = compile_native_when(source)
    assert native is not None
    for zone in ZONES:
        tenant = {**TENANT, "timezone": zone}
        expression, _ = compile_expression(source, [])
        assert expression is not None
        context_scope = CelScope([expression], {})
        disagreements = []
        for now in moments()[:: 3 if zone in ("Asia/Kolkata", "-08:00") else 1]:
            want = check_when(expression, context_scope.build_context({}, AGENT, tenant, now))
            if native(now, tenant) is not want:
                disagreements.append((now.isoformat(), want))
        assert disagreements == [], (zone, disagreements[:5])


@pytest.mark.parametrize(
    ("now", "tenant"),
    [
        (datetime.datetime(2024, 5, 1, 12, 0), TENANT),  # naive
        ("2024-05-01T12:00:00Z", TENANT),
        (None, TENANT),
        (datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC), {**TENANT, "timezone": "Mars/Olympus"}),
        (datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC), {**TENANT, "timezone": 5}),
        (datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC), {**TENANT, "timezone": "+25:00"}),
        (datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC), None),
        (datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC), {"id": "t"}),  # UTC
        (datetime.datetime(1, 1, 1, 0, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1))), TENANT),
        (
            datetime.datetime(9999, 12, 31, 23, 0, tzinfo=datetime.UTC),
            {**TENANT, "timezone": "Pacific/Kiritimati"},
        ),
    ],
)
@pytest.mark.parametrize("source", SOURCES)
def test_native_helpers_defer_to_cel_where_cel_fails(source: str, now: Any, tenant: Any) -> None:
    native = compile_native_when(source)
    assert native is not None
    try:
        want: bool | str | type[Exception] = run_in_cel(source, now, tenant)
    except (OverflowError, ValueError) as error:  # escapes the CEL path too
        want = type(error)
    got = native(now, tenant)
    if type(want) is bool:
        assert got is want
    else:
        assert got is None  # the CEL path runs and reports it


@pytest.mark.parametrize("source", NOT_NATIVE)
def test_other_expressions_run_in_cel(source: str) -> None:
    assert compile_native_when(source) is None


def native_off(monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(policy.compile, "compile_native_when", lambda source: None)
        return compile_document(document)


@pytest.mark.parametrize(
    "extra_rule",
    [
        None,
        # another `when` reads the action: the context can fail on request data, so CEL runs all
        {"id": "big", "decision": "DENY", "when": "action.n > 10"},
    ],
)
def test_decisions_and_traces_are_the_same_with_and_without_native_helpers(
    monkeypatch: pytest.MonkeyPatch, extra_rule: dict[str, Any] | None
) -> None:
    rules = [
        {
            "id": "closed",
            "decision": "ESCALATE",
            "when": SOURCES[1],
            "approvals": {"threshold": 1, "roles": ["cfo"]},
        },
        {"id": "weekend", "decision": "DENY", "when": "is_weekend(now)"},
        *([extra_rule] if extra_rule else []),
        {"id": "allow", "decision": "ALLOW", "match": {}},
    ]
    factors = [{"name": "after-hours", "when": SOURCES[1], "score": 90}]
    document = make_document(*rules, risk={"factors": factors})
    native, plain = compile_document(document), native_off(monkeypatch, document)
    assert native.rules[0].matcher.when is not None and native.rules[0].matcher.when.native is not None
    assert plain.rules[0].matcher.when is not None and plain.rules[0].matcher.when.native is None
    tenants = [TENANT, {**TENANT, "timezone": "Europe/Berlin"}, {**TENANT, "timezone": "Nowhere/Land"}]
    actions: list[dict[str, Any]] = [{"n": 1}, {"n": 99}, {"n": 2**70}, {"n": "x"}]
    times: list[Any] = [*moments()[::97], datetime.datetime(2024, 5, 1, 12, 0), None]
    for now in times:
        for tenant in tenants:
            for action in actions:
                request = EvaluationInput(action, AGENT, tenant, now)
                for explain in (True, False):
                    assert native.evaluate(request, explain=explain) == plain.evaluate(
                        request, explain=explain
                    )
