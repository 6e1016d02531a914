"""Table-driven policy tests, like ``opa test``: a YAML file of cases, each an action and what it should decide.

::

    cases:
      - name: small invoice is allowed
        action: {type: pay_invoice, amount: "120.00", asset: USDC, vendor: acme, invoice: inv_1}
        expect: {decision: ALLOW}
      - name: daily limit escalates to the CFO
        action: {type: pay_invoice, amount: "7800.00", asset: USDC, vendor: acme, invoice: inv_2}
        agent: {id: agent-7, name: payments-bot}          # default {id: test-agent, name: test-agent}
        tenant: {id: acme, timezone: America/New_York}    # default {id: test-tenant, name: test-tenant}
        now: "2026-03-09T15:00:00Z"                       # quoted; default 2026-01-05T15:00:00Z (a Monday)
        context: {vendor: {first_seen: false, prior_count: 14}}
        usage: {daily-spend-per-agent: "15000"}           # limits not named here start at 0
        scope: {assets: [USDC]}                           # the agent's scope, optional
        expect:
          decision: ESCALATE
          reason: limit_exceeded:daily-spend-per-agent    # optional
          approvals: [{threshold: 1, roles: [cfo]}]       # optional; every requirement, in order
          risk_level: low                                 # optional
          limits_tripped: [daily-spend-per-agent]         # optional

:func:`load_cases` reads and checks the file (problems carry paths such as
``cases[3].expect.decision``); :func:`run_cases` evaluates each case and
returns a :class:`TestReport`.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import msgspec

from policy.decimals import DECIMAL_TEXT
from policy.decision import ApprovalRequirement, Check, Decision, EvaluationInput
from policy.document import DECISIONS, describe_value
from policy.errors import PolicyInvalid, Problem
from policy.evaluate import CompiledPolicy
from policy.load import parse_document
from policy.scopes import load_scope, validate_scope

__all__ = ["CaseResult", "TestReport", "load_cases", "run_cases"]

CASE_FIELDS = ("name", "action", "agent", "tenant", "now", "context", "usage", "scope", "expect")
EXPECT_FIELDS = ("decision", "reason", "approvals", "risk_level", "limits_tripped")
DEFAULT_NOW = datetime.datetime(2026, 1, 5, 15, 0, tzinfo=datetime.UTC)
DEFAULT_AGENT = {"id": "test-agent", "name": "test-agent"}
DEFAULT_TENANT = {"id": "test-tenant", "name": "test-tenant"}


class CaseResult(msgspec.Struct, frozen=True):
    """One case: whether it passed, what went wrong, and the decision it got."""

    name: str
    passed: bool
    failures: list[str]
    decision: Decision


class TestReport(msgspec.Struct, frozen=True):
    """Every case's result, in file order."""

    __test__ = False  # not a pytest class

    results: list[CaseResult]

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return self.failed == 0


def load_cases(body: bytes, media_type: str = "application/yaml") -> list[dict[str, Any]]:
    """Parse and check a cases file (YAML or JSON).

    Raises:
        PolicyInvalid: the file does not parse or a case is malformed (every problem listed).
    """
    document = parse_document(body, media_type)
    problems: list[Problem] = []
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise PolicyInvalid([Problem(path="cases", message="the file must be a mapping with a list `cases`")])
    for index, case in enumerate(document["cases"]):
        _check_case(case, f"cases[{index}]", problems)
    if problems:
        raise PolicyInvalid(problems)
    return document["cases"]


def _check_case(case: Any, path: str, problems: list[Problem]) -> None:
    def add(where: str, message: str) -> None:
        problems.append(Problem(path=f"{path}{where}", message=message, rule=name))

    if not isinstance(case, dict):
        problems.append(Problem(path=path, message=f"a case must be a mapping, got {describe_value(case)}"))
        return
    name = case.get("name") if isinstance(case.get("name"), str) else None
    for key in case:
        if key not in CASE_FIELDS:
            add(f".{key}", f"unknown field; expected one of {', '.join(CASE_FIELDS)}")
    for key in ("name", "action", "expect"):
        if key not in case:
            add(f".{key}", "is required")
    for key in ("action", "agent", "tenant", "context", "usage"):
        if key in case and not isinstance(case[key], dict):
            add(f".{key}", f"must be a mapping, got {describe_value(case[key])}")
    if "now" in case and _parse_now(case["now"]) is None:
        add(".now", 'must be a quoted RFC 3339 time with a zone, e.g. "2026-03-09T15:00:00Z"')
    for limit_id, total in (case.get("usage") or {}).items() if isinstance(case.get("usage"), dict) else ():
        if not (isinstance(total, str) and DECIMAL_TEXT.fullmatch(total)) and type(total) is not int:
            add(f".usage.{limit_id}", 'window totals are decimal strings such as "15000.00"')
    if "scope" in case:
        for problem in validate_scope(case["scope"]):
            add(".scope" + (f".{problem.path}" if problem.path else ""), problem.message)
    expect = case.get("expect")
    if "expect" in case:
        if not isinstance(expect, dict):
            add(".expect", f"must be a mapping, got {describe_value(expect)}")
            return
        for key in expect:
            if key not in EXPECT_FIELDS:
                add(f".expect.{key}", f"unknown field; expected one of {', '.join(EXPECT_FIELDS)}")
        if expect.get("decision") not in DECISIONS:
            add(".expect.decision", f"must be one of {', '.join(DECISIONS)}")
        if "approvals" in expect and not isinstance(expect["approvals"], list):
            add(".expect.approvals", "must be a list of requirements such as {threshold: 1, roles: [cfo]}")
        if "limits_tripped" in expect and not isinstance(expect["limits_tripped"], list):
            add(".expect.limits_tripped", "must be a list of limit ids")


def _parse_now(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(datetime.UTC) if moment.utcoffset() is not None else None


def build_input(policy: CompiledPolicy, case: dict[str, Any]) -> EvaluationInput:
    """The request a case describes; limits the case's ``usage`` does not name start at 0."""
    request = EvaluationInput(
        action=case["action"],
        agent=case.get("agent", DEFAULT_AGENT),
        tenant=case.get("tenant", DEFAULT_TENANT),
        now=_parse_now(case["now"]) if "now" in case else DEFAULT_NOW,  # type: ignore[arg-type]
        context=case.get("context"),
        scope=load_scope(case["scope"]) if "scope" in case else None,
    )
    given = {key: Decimal(str(value)) for key, value in case.get("usage", {}).items()}
    usage = {claim.id: given.get(claim.id, Decimal(0)) for claim in policy.limit_claims(request)}
    return EvaluationInput(**{**_fields(request), "usage": {**given, **usage}})


def _fields(request: EvaluationInput) -> dict[str, Any]:
    return {name: getattr(request, name) for name in request.__slots__}  # type: ignore[attr-defined]


def _requirement_matches(expected: Any, actual: ApprovalRequirement) -> bool:
    if not isinstance(expected, dict):
        return False
    have = msgspec.json.decode(msgspec.json.encode(actual))  # tuples become lists, as in YAML
    return all(have.get(key) == value for key, value in expected.items())


def check_case(decision: Decision, expect: dict[str, Any]) -> list[str]:
    """What differs between ``decision`` and the case's ``expect`` (empty: the case passes)."""
    failures = []
    if decision.decision != expect["decision"]:
        failures.append(f"decision: want {expect['decision']}, got {decision.decision} ({decision.reason})")
    if "reason" in expect and decision.reason != expect["reason"]:
        failures.append(f"reason: want {expect['reason']}, got {decision.reason}")
    if "approvals" in expect:
        actual = decision.approvals_required or []
        wanted = expect["approvals"]
        if len(actual) != len(wanted) or not all(map(_requirement_matches, wanted, actual)):
            shown = msgspec.json.encode(actual).decode()
            failures.append(f"approvals: want {msgspec.json.encode(wanted).decode()}, got {shown}")
    if "risk_level" in expect:
        level = decision.risk.level if decision.risk is not None else None
        if level != expect["risk_level"]:
            failures.append(f"risk_level: want {expect['risk_level']}, got {level}")
    if "limits_tripped" in expect:
        tripped = [status.id for status in decision.limits or [] if status.tripped]
        if tripped != expect["limits_tripped"]:
            failures.append(f"limits_tripped: want {expect['limits_tripped']}, got {tripped}")
    return failures


def _refused_amount(policy: CompiledPolicy, action: Any) -> Decision | None:
    """The gateway refuses an action with a malformed amount before evaluating it (422
    ``invalid_amount``); a case sees that as DENY ``invalid_amount``."""
    problems = policy.amount_problems(action) if isinstance(action, dict) else []
    if not problems:
        return None
    field, why = problems[0]
    return Decision(
        "DENY", "invalid_amount", [], None, None, [Check(field, True, why, [f"{field} {why}"], kind="amount")]
    )


def run_cases(policy: CompiledPolicy, cases: list[dict[str, Any]]) -> TestReport:
    """Evaluate every case (checked by :func:`load_cases`) against ``policy``. Never raises for a failing case."""
    results = []
    for case in cases:
        decision = _refused_amount(policy, case["action"]) or policy.evaluate(build_input(policy, case))
        failures = check_case(decision, case["expect"])
        results.append(CaseResult(str(case["name"]), not failures, failures, decision))
    return TestReport(results)
