"""Resource classification: the data tier of what an action touches, set by the tenant admin.

::

    classifications:
      payroll_db:   {tier: restricted, risk_modifier: "1.3"}
      public_site:  {tier: public, risk_modifier: "0.5"}

Tiers, from least to most sensitive: ``public``, ``internal``,
``confidential``, ``restricted``, ``critical``. ``risk_modifier`` is a decimal
string from 0 to 10 that multiplies the action's risk score.

(1) An action with ``resource_type`` gets the admin's tier and modifier; any
    ``data_sensitivity`` the agent declared is ignored (agents do not grade
    their own homework).
(2) A ``resource_type`` the document does not list gets tier ``critical`` and
    modifier 1.5: unknown is treated as the worst case (fail-secure).
(3) An action without ``resource_type`` keeps the agent's ``data_sensitivity``
    when it is a tier name (modifier 1); one that is not a tier name counts as
    unknown (2); without either, the action has no classification.

Rules read ``classification.tier`` and ``classification.resource_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from policy.decision import Classification

__all__ = ["TIERS", "classify", "compile_classifications"]

TIERS = ("public", "internal", "confidential", "restricted", "critical")
CLASSIFICATION_FIELDS = ("tier", "risk_modifier")
MAX_RISK_MODIFIER = Decimal(10)
UNKNOWN_TIER, UNKNOWN_MODIFIER = "critical", "1.5"

Classified = tuple[Classification, dict[str, Any], Decimal]  # (for the decision, for rules, modifier)


def _entry(resource_type: str | None, tier: str, modifier: str, source: str) -> Classified:
    root = {"tier": tier} if resource_type is None else {"tier": tier, "resource_type": resource_type}
    return Classification(resource_type, tier, modifier, source), root, Decimal(modifier)


def compile_classifications(section: Mapping[str, Mapping[str, str]]) -> dict[str, Classified]:
    """Precompute the answer for every listed resource type (the section is validated)."""
    return {
        name: _entry(name, spec["tier"], spec["risk_modifier"], "policy") for name, spec in section.items()
    }


_AGENT_TIERS = {tier: _entry(None, tier, "1", "agent") for tier in TIERS}


def classify(table: Mapping[str, Classified], action: Mapping[str, Any]) -> Classified | None:
    """Classify ``action`` by the rules (1)-(3) above; ``None`` when it has no classification."""
    resource_type = action.get("resource_type")
    if resource_type is not None:
        known = table.get(resource_type) if isinstance(resource_type, str) else None  # (1)
        if known is not None:
            return known
        shown = resource_type if isinstance(resource_type, str) else None
        return _entry(shown, UNKNOWN_TIER, UNKNOWN_MODIFIER, "unknown")  # (2)
    declared = action.get("data_sensitivity")  # (3)
    if declared is None:
        return None
    known = _AGENT_TIERS.get(declared) if isinstance(declared, str) else None
    return known or _entry(None, UNKNOWN_TIER, UNKNOWN_MODIFIER, "unknown")
