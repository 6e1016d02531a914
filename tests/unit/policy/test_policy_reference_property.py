"""Issue 3's reference set decides exactly like a plain-Python reference, on thousands of random actions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import EvaluationInput, compile_document

from .conftest import AGENT, NOON, TENANT
from .reference_set import BLOCKLIST, STABLECOINS, reference_document

POLICY = compile_document(reference_document())
BLOCKED = frozenset(BLOCKLIST)


def reference(action: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(decision, reason, roles of each requirement) written out by hand."""
    amount = action.get("amount")
    if action.get("vendor") in BLOCKED:
        return "DENY", "blocked", []
    if "asset" in action and action["asset"] not in STABLECOINS:
        return "DENY", "asset", []
    # A missing or malformed amount makes the amount rules errors: DENY policy_error:cfo.
    if (
        not isinstance(amount, str)
        or not amount.replace(".", "", 1).lstrip("-").isdigit()
        or amount.startswith(".")
        or amount.endswith(".")
    ):
        return "DENY", "policy_error:cfo", []
    value = Decimal(amount)
    if 5000 < value <= 50000:
        return "ESCALATE", "cfo", ["cfo"]
    if value > 50000:
        return "ESCALATE", "execs", ["cfo,controller,ceo"]
    return "ALLOW", "allow", []


amounts = st.one_of(
    st.decimals(min_value=-1000, max_value=200000, places=2, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(
        ["5000", "5000.00", "5000.000000000000000001", "50000", "50000.01", "0", "1e4", "", "1,000", " 5"]
    ),
)
actions = st.fixed_dictionaries(
    {},
    optional={
        "vendor": st.one_of(
            st.sampled_from([*BLOCKLIST[:5], "acme", "blocked-vendor-1000"]), st.text(max_size=12)
        ),
        "asset": st.sampled_from(["USDC", "USDT", "EURC", "DOGE", "usdc", ""]),
        "amount": amounts,
    },
)


@settings(max_examples=3000, deadline=None)
@given(actions)
def test_reference_set_matches_plain_python(action: dict[str, Any]) -> None:
    request = EvaluationInput(action, AGENT, TENANT, NOON)
    for explain in (False, True):
        decision = POLICY.evaluate(request, explain=explain)
        roles = [",".join(r.roles or ()) for r in decision.approvals_required or []]
        assert (decision.decision, decision.reason, roles) == reference(action), action
