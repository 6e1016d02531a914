"""Issue 3's reference set: the document the benchmark times (bench/bench_policy.py) and the
property test checks against plain Python (test_policy_reference_property.py)."""

from __future__ import annotations

from typing import Any

BLOCKLIST = [f"blocked-vendor-{index:04d}" for index in range(1000)]
STABLECOINS = ["USDC", "USDT", "EURC"]


def reference_document() -> dict[str, Any]:
    """(1) DENY a vendor on the 1,000-entry blocklist; (2) DENY an asset outside USDC, USDT, EURC;
    (3) ESCALATE to 1 cfo above 5,000 up to 50,000; (4) ESCALATE to 2 of cfo, controller, ceo
    above 50,000; (5) ALLOW the rest."""
    return {
        "schema": "verdict.policy/v1",
        "default": "DENY",
        "lists": {"blocked_vendors": BLOCKLIST, "stablecoins": STABLECOINS},
        "rules": [
            {"id": "blocked", "decision": "DENY", "match": {"action.vendor": {"in": "blocked_vendors"}}},
            {"id": "asset", "decision": "DENY", "match": {"action.asset": {"not_in": "stablecoins"}}},
            {
                "id": "cfo",
                "decision": "ESCALATE",
                "match": {"action.amount": {"gt": "5000", "lte": "50000"}},
                "approvals": {"threshold": 1, "roles": ["cfo"]},
            },
            {
                "id": "execs",
                "decision": "ESCALATE",
                "match": {"action.amount": {"gt": "50000"}},
                "approvals": {"threshold": 2, "roles": ["cfo", "controller", "ceo"]},
            },
            {"id": "allow", "decision": "ALLOW", "match": {}},
        ],
    }
