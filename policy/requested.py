"""An agent asking for a human review: a proposal with ``require_approval`` that the policy
would ALLOW is escalated instead.

The approvals it needs are the policy's ``defaults.requested_approvals`` or, when the policy
names none, one approver of the tenant in any role it holds (the gateway knows the roles). A
DENY stays DENY and an ESCALATE keeps its own requirements: asking for a review never makes
a decision more permissive.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from policy.decision import ApprovalRequirement, Decision
from policy.document import ALLOW, ESCALATE

__all__ = ["APPROVAL_REQUESTED", "any_approver", "escalate_on_request"]

APPROVAL_REQUESTED = "approval_requested_by_agent"  # the reason, and the requirement's `rule`


def any_approver(roles: Iterable[str]) -> ApprovalRequirement:
    """One signer approving in any of ``roles`` (empty ``roles``: nobody can, so the action
    waits until its window ends: fail closed)."""
    return ApprovalRequirement(APPROVAL_REQUESTED, threshold=1, roles=tuple(sorted(set(roles))))


def escalate_on_request(
    decision: Decision, requirement: ApprovalRequirement, timeout_minutes: int
) -> Decision:
    """``decision`` as it stands unless it is ALLOW: then ESCALATE with reason
    ``approval_requested_by_agent``, ``requirement`` and ``timeout_minutes``. Never raises."""
    if decision.decision != ALLOW:
        return decision
    return msgspec.structs.replace(
        decision,
        decision=ESCALATE,
        reason=APPROVAL_REQUESTED,
        approvals_required=[requirement],
        timeout_minutes=timeout_minutes,
    )
