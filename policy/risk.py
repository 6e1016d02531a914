"""Risk assessment: a score from 0 to 100 and a level, from factors the policy names.

::

    risk:
      factors:
        - {name: large-amount, match: {action.amount: {gt: "10000"}}, score: 30}
        - {name: new-vendor, match: {context.vendor.first_seen: {eq: true}}, score: 40}
      bands: {medium: 40, high: 70, critical: 85}     # the defaults

(1) Every factor is evaluated in document order; a factor that matches adds
    its ``score`` (0..100). A factor that cannot be evaluated (a missing
    amount under ``gt``, a CEL error) adds its score too: unknown risk counts as
    risk (fail-secure), and the trace says why.
(2) The sum is multiplied by the classification's ``risk_modifier`` (1 when
    the action has no classification), rounded up to a whole number and capped
    to 0..100.
(3) The level is ``critical`` from ``bands.critical``, ``high`` from
    ``bands.high``, ``medium`` from ``bands.medium``, else ``low``.

Rules then read ``risk.score`` and ``risk.level``; factors cannot (they make it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from policy.decision import Check, RiskAssessment, RiskFactorScore
from policy.matcher import EvaluationState, Matcher

__all__ = ["DEFAULT_BANDS", "LEVELS", "RiskFactor", "RiskModel"]

RISK_FIELDS = ("factors", "bands")
FACTOR_FIELDS = ("name", "match", "when", "score")
LEVELS = ("low", "medium", "high", "critical")
DEFAULT_BANDS = {"medium": 40, "high": 70, "critical": 85}
MAX_SCORE = 100


@dataclass(frozen=True, slots=True)
class RiskFactor:
    name: str
    score: int
    matcher: Matcher


@dataclass(frozen=True, slots=True)
class RiskModel:
    factors: tuple[RiskFactor, ...]
    medium: int
    high: int
    critical: int

    def level(self, score: int) -> str:
        """(3)"""
        if score >= self.critical:
            return "critical"
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"

    def assess(
        self, state: EvaluationState, modifier: Decimal, checks: list[Check] | None
    ) -> tuple[RiskAssessment, dict[str, object]]:
        """Score the request in ``state``: the assessment for the decision and the ``risk`` root for rules."""
        total = 0
        scored = []
        for factor in self.factors:  # (1)
            trace: list[str] | None = None if checks is None else []
            matched, error = factor.matcher.run(state, trace)
            if checks is not None and trace is not None:
                checks.append(Check(factor.name, matched, error, trace, kind="risk_factor"))
            if matched:
                total += factor.score
                scored.append(RiskFactorScore(factor.name, factor.score))
        if modifier != 1 and total:  # (2)
            score = math.ceil(Decimal(total) * modifier)
        else:
            score = total
        score = max(0, min(MAX_SCORE, score))
        level = self.level(score)
        return RiskAssessment(score, level, scored), {"score": score, "level": level}
