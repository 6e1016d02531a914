"""Counting approvals against requirements (policy.approvals), and the all_of form in documents."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from policy import ApprovalRequirement, EvaluationInput, RoleQuota, compile_document
from policy.approvals import Answer, all_met, is_met, missing, required_roles

ROLES = ("cfo", "controller", "ceo")


def threshold(m: int, *roles: str) -> ApprovalRequirement:
    return ApprovalRequirement("r", threshold=m, roles=roles)


def all_of(**quotas: int) -> ApprovalRequirement:
    return ApprovalRequirement("r", all_of=tuple(RoleQuota(role, n) for role, n in quotas.items()))


def test_one_of_n() -> None:
    need = threshold(1, "cfo", "controller")
    assert not is_met(need, [])
    assert is_met(need, [Answer("0xA", "controller", True)])
    assert missing(need, []) == ["1 more of cfo, controller"]


def test_two_of_three_needs_two_distinct_signers() -> None:
    need = threshold(2, *ROLES)
    assert not is_met(need, [Answer("0xA", "cfo", True)])
    assert not is_met(need, [Answer("0xA", "cfo", True), Answer("0xA", "ceo", True)])  # one signer
    assert is_met(need, [Answer("0xA", "cfo", True), Answer("0xB", "cfo", True)])
    assert is_met(need, [Answer("0xA", "cfo", True), Answer("0xB", "ceo", True)])


def test_rejections_and_other_roles_do_not_count() -> None:
    need = threshold(1, "cfo")
    assert not is_met(need, [Answer("0xA", "cfo", False), Answer("0xB", "ceo", True)])


def test_all_of_counts_each_role() -> None:
    need = all_of(cfo=1, controller=2)
    assert missing(need, [Answer("0xA", "controller", True)]) == ["1 more cfo", "1 more controller"]
    answers = [
        Answer("0xA", "cfo", True),
        Answer("0xB", "controller", True),
        Answer("0xC", "controller", True),
    ]
    assert is_met(need, answers)


def test_a_signer_counts_once_per_requirement_whatever_its_roles() -> None:
    # a signer holding cfo and controller answers once, in one role
    need = all_of(cfo=1, controller=1)
    assert not is_met(need, [Answer("0xA", "cfo", True), Answer("0xA", "controller", True)])


def test_every_requirement_must_hold_and_none_is_never_met() -> None:
    first, second = threshold(1, "cfo"), all_of(controller=1)
    assert not all_met([], [Answer("0xA", "cfo", True)])
    assert not all_met([first, second], [Answer("0xA", "cfo", True)])
    assert all_met([first, second], [Answer("0xA", "cfo", True), Answer("0xB", "controller", True)])
    assert required_roles([first, second]) == {"cfo", "controller"}


def reference(requirement: ApprovalRequirement, answers: list[Answer]) -> bool:
    """Plain counting over distinct signers' first answers."""
    first: dict[str, Answer] = {}
    for answer in answers:
        first.setdefault(answer.signer, answer)
    approving = [a for a in first.values() if a.approve]
    if requirement.all_of is not None:
        return all(sum(a.role == q.role for a in approving) >= q.min for q in requirement.all_of)
    return sum(a.role in (requirement.roles or ()) for a in approving) >= (requirement.threshold or 0)


answers_strategy = st.lists(
    st.builds(Answer, st.sampled_from(["0xA", "0xB", "0xC", "0xD"]), st.sampled_from(ROLES), st.booleans()),
    max_size=8,
)
requirement_strategy = st.one_of(
    st.builds(
        lambda m, roles: threshold(m, *roles),
        st.integers(1, 4),
        st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True),
    ),
    st.dictionaries(st.sampled_from(ROLES), st.integers(1, 3), min_size=1).map(lambda q: all_of(**q)),
)


@given(requirement_strategy, answers_strategy)
def test_counting_matches_a_plain_reference(requirement: ApprovalRequirement, answers: list[Answer]) -> None:
    assert is_met(requirement, answers) == reference(requirement, answers)


def test_a_document_with_all_of_escalates_with_it() -> None:
    document: dict[str, Any] = {
        "schema": "verdict.policy/v1",
        "rules": [
            {
                "id": "big",
                "decision": "ESCALATE",
                "match": {},
                "approvals": {"all_of": [{"role": "cfo", "min": 1}, {"role": "controller", "min": 1}]},
                "timeout_minutes": 30,
            }
        ],
    }
    import datetime

    decision = compile_document(document).evaluate(
        EvaluationInput(
            {"type": "x"},
            {"id": "a", "name": "a"},
            {"id": "t", "name": "t"},
            datetime.datetime.now(datetime.UTC),
        )
    )
    assert decision.decision == "ESCALATE"
    assert decision.timeout_minutes == 30
    assert decision.approvals_required == [
        ApprovalRequirement("big", all_of=(RoleQuota("cfo", 1), RoleQuota("controller", 1)))
    ]
