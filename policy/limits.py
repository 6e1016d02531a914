"""Limits (velocity): how much, or how often, in a sliding window, per agent, tenant, vendor, asset or field.

::

    limits:
      - id: daily-spend-per-agent
        per: agent                  # agent | tenant | vendor | asset | action.<key path>
        window: 24h                 # <n>s | <n>m | <n>h | <n>d, up to 366 days
        sum: action.amount          # or `count: true`
        match: {action.type: {eq: pay_invoice}}    # optional, and/or `when`
        max: "20000"
        decision: ESCALATE          # or DENY
        approvals: {threshold: 1, roles: [cfo]}

The policy cannot see storage, so a limit is decided in two steps:

(1) ``CompiledPolicy.limit_claims(request)`` says which limits apply to the
    request, each with its bucket ``key`` (the ``per`` value: agent id, tenant
    id, ``action.vendor``, the action type's asset field, or the field named)
    and the ``amount`` it adds (the ``sum`` field's decimal, or 1 for ``count``).
(2) The gateway reads each bucket's total over the window (allowed and pending
    actions; not rejected, cancelled or expired ones) and passes them as
    ``EvaluationInput.usage``. The limit *trips* when ``total + amount > max``;
    its decision then joins the rules' (DENY overrides ESCALATE overrides ALLOW)
    with reason ``limit_exceeded:<id>`` unless the limit names a ``reason``.

Fail closed: a limit that applies but cannot be evaluated (no ``per`` value,
a ``sum`` field that is missing, not a decimal, or negative, or no usage
supplied) is a DENY with reason ``policy_error:<limit id>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policy.decimals import explain_not_decimal, parse_decimal
from policy.decision import ApprovalRequirement, LimitClaim, LimitStatus
from policy.matcher import Matcher
from policy.values import MISSING, cached_decimal, render_value

__all__ = ["CompiledLimit", "LimitError", "format_decimal"]

LIMIT_FIELDS = (
    "id",
    "per",
    "window",
    "sum",
    "count",
    "match",
    "when",
    "max",
    "decision",
    "reason",
    "approvals",
    "timeout_minutes",
)
PER_SHORTHANDS = ("agent", "tenant", "vendor", "asset")
LIMIT_EXCEEDED = "limit_exceeded:"
ONE = Decimal(1)
_ZERO = Decimal(0)


class LimitError(Exception):
    """A limit that applies cannot be evaluated; the message goes into the decision's trace."""


def format_decimal(value: Decimal) -> str:
    """A decimal as plain digits, never in exponent form (what ``format(value, "f")`` gives)."""
    # str() is about four times faster and writes the same plain digits unless the exponent is
    # positive or the number is below 1e-6 (General Decimal Arithmetic, to-scientific-string),
    # where it switches to exponent form.
    text = str(value)
    return text if "E" not in text else format(value, "f")


def bucket_key(value: Any) -> str:
    """The bucket key of a ``per`` value: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else render_value(value)


@dataclass(frozen=True, slots=True)
class CompiledLimit:
    id: str
    per: str
    window: str
    window_seconds: int
    read_per: Callable[[tuple[Any, ...]], Any]  # roots -> per value (MISSING when absent)
    read_amount: Callable[[tuple[Any, ...]], Any] | None  # roots -> amount value; None for count
    max: Decimal
    decision: str
    reason: str
    requirement: ApprovalRequirement | None
    timeout_minutes: int
    matcher: Matcher
    max_text: str = ""  # max as a plain decimal string, rendered once

    def claim(self, roots: tuple[Any, ...]) -> LimitClaim:
        """What this request adds to the limit's bucket (the limit applies).

        Raises:
            LimitError: no ``per`` value, or the ``sum`` field is not a non-negative decimal.
        """
        per_value = self.read_per(roots)
        if per_value is MISSING or per_value is None:
            raise LimitError(f"per {self.per}: the request has no value for it")
        if self.read_amount is None:
            amount = ONE
        else:
            raw = self.read_amount(roots)
            number = cached_decimal(raw)  # the amount the ordering conditions already parsed
            if number is None:
                problem = "is missing" if raw is MISSING else explain_not_decimal(raw)
                raise LimitError(f"sum: the amount {problem}")
            if number < 0:
                raise LimitError("sum: the amount is negative")
            amount = number
        return LimitClaim(self.id, bucket_key(per_value), self.window_seconds, amount)

    def judge(self, claim: LimitClaim, usage: Mapping[str, Any] | None) -> LimitStatus:
        """Compare the window total plus this action with ``max``.

        Raises:
            LimitError: the gateway supplied no (or no decimal) total for this limit.
        """
        raw = usage.get(self.id, MISSING) if usage is not None else MISSING
        total = raw if isinstance(raw, Decimal) and raw.is_finite() else parse_decimal(raw)
        if total is None:
            raise LimitError("usage: no window total was supplied for this limit")
        tripped = total + claim.amount > self.max
        headroom = self.max - total if total < self.max else _ZERO
        return LimitStatus(
            self.id,
            self.window,
            claim.key,
            format_decimal(total),
            format_decimal(claim.amount),
            self.max_text,
            format_decimal(headroom),
            tripped,
        )

    def describe(self, status: LimitStatus) -> str:
        """The trace line: ``daily-spend per agent agent-7 over 24h: 15000.00 + 7800.00 > 20000: tripped``."""
        head = f"{self.id} per {self.per} {status.key} over {self.window}: {status.total} + {status.amount}"
        if status.tripped:
            return f"{head} > {status.max}: tripped"
        return f"{head} <= {status.max}: within (headroom {status.headroom})"
