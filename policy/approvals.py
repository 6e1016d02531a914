"""Counting approvals against the requirements of an escalated action.

An approval is given by one signer (an address) in one role, approving or rejecting. Each
signer gives at most one answer per action (the gateway refuses a second), so "a signer
counts once per requirement, even with several roles" holds by construction: the signer
counts in the role it signed for.

- ``{threshold: M, roles}`` is met when at least M approvals were given in any of ``roles``.
- ``{all_of: [{role, min}]}`` is met when, for every quota, at least ``min`` approvals were
  given in that ``role``.
- An action is approved when every requirement is met (all matched rules together).
- A rejection by a signer in a role some requirement asks for ends the action.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from policy.evaluate import ApprovalRequirement

__all__ = ["Answer", "all_met", "is_met", "missing", "required_roles"]


class Answer(NamedTuple):
    """One signer's answer: ``approve`` False is a rejection."""

    signer: str
    role: str
    approve: bool


def required_roles(requirements: Iterable[ApprovalRequirement]) -> set[str]:
    """Every role in which an approval or a rejection counts for these requirements."""
    roles: set[str] = set()
    for requirement in requirements:
        if requirement.all_of is not None:
            roles.update(quota.role for quota in requirement.all_of)
        else:
            roles.update(requirement.roles or ())
    return roles


def _approvals_by_role(answers: Iterable[Answer]) -> Counter[str]:
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    for answer in answers:
        if answer.signer in seen:  # a signer's first answer is its answer
            continue
        seen.add(answer.signer)
        if answer.approve:
            counts[answer.role] += 1
    return counts


def missing(requirement: ApprovalRequirement, answers: Sequence[Answer]) -> list[str]:
    """What the requirement still lacks, e.g. ``["1 more of cfo, controller"]`` (empty: met)."""
    counts = _approvals_by_role(answers)
    if requirement.all_of is not None:
        return [
            f"{quota.min - counts[quota.role]} more {quota.role}"
            for quota in requirement.all_of
            if counts[quota.role] < quota.min
        ]
    roles = requirement.roles or []
    have = sum(counts[role] for role in roles)
    threshold = requirement.threshold or 0
    return [f"{threshold - have} more of {', '.join(roles)}"] if have < threshold else []


def is_met(requirement: ApprovalRequirement, answers: Sequence[Answer]) -> bool:
    return not missing(requirement, answers)


def all_met(requirements: Sequence[ApprovalRequirement], answers: Sequence[Answer]) -> bool:
    """Whether every requirement holds. An empty list of requirements is never met: an
    escalation that names nobody cannot be approved (fail closed)."""
    return bool(requirements) and all(is_met(requirement, answers) for requirement in requirements)
