"""Simulation: replay recorded requests through a draft policy and report every decision that would change.

The gateway loads the requests (the tenant's last N actions, or a time
range) with the decision each got, and calls :func:`simulate`; nothing is
written. A request is replayed as recorded: same action, agent, tenant,
``now``, context and usage, so only the policy differs.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from policy.decision import ApprovalRequirement, Decision, EvaluationInput
from policy.evaluate import CompiledPolicy

__all__ = ["DecisionChange", "RecordedRequest", "simulate"]


class RecordedRequest(msgspec.Struct, frozen=True):
    """A past request and what it was decided (``approvals`` on ESCALATE)."""

    id: str
    request: EvaluationInput
    decision: str
    reason: str
    approvals: list[ApprovalRequirement] | None = None


class DecisionChange(msgspec.Struct, frozen=True):
    """A recorded request the draft decides differently: its decision, reason or approvals."""

    id: str
    before_decision: str
    before_reason: str
    after_decision: str
    after_reason: str
    after_approvals: list[ApprovalRequirement] | None
    after: Decision


def simulate(draft: CompiledPolicy, recorded: Iterable[RecordedRequest]) -> list[DecisionChange]:
    """Evaluate every recorded request with ``draft`` (explain on); return those that would change, in order.

    A change is a different decision, reason or set of approval requirements. Never raises.
    """
    changes = []
    for item in recorded:
        after = draft.evaluate(item.request)
        same = (
            after.decision == item.decision
            and after.reason == item.reason
            and (after.approvals_required or None) == (item.approvals or None)
        )
        if not same:
            changes.append(
                DecisionChange(
                    item.id,
                    item.decision,
                    item.reason,
                    after.decision,
                    after.reason,
                    after.approvals_required,
                    after,
                )
            )
    return changes
