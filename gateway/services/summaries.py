"""The sentence an approver signs (`Approval.summary`) when no action type template gives one."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["summarize"]


def summarize(action_type: str, action: dict[str, Any]) -> str:
    """The sentence an approver's wallet shows when no action type template gives one, e.g.
    "payment: 7,800.00 USDC to acme-supplies (invoice inv_8231)"."""
    parts = [f"{action_type}:"]
    amount = action.get("amount")
    if isinstance(amount, str):
        try:
            parts.append(_group_digits(amount))
        except InvalidOperation:
            parts.append(amount)
        asset = action.get("asset") or action.get("currency")
        if isinstance(asset, str):
            parts.append(asset)
    for key, word in (
        ("vendor", "to"),
        ("payee", "to"),
        ("recipient", "to"),
        ("to", "to"),
        ("resource", "on"),
    ):
        value = action.get(key)
        if isinstance(value, str):
            parts.append(f"{word} {value}")
            break
    for key in ("invoice", "invoice_id", "reference"):
        value = action.get(key)
        if isinstance(value, str):
            parts.append(f"({key.replace('_', ' ')} {value})")
            break
    text = " ".join(parts)
    return text if len(parts) > 1 else f"{action_type} action"


def _group_digits(amount: str) -> str:
    """`7800.00` -> `7,800.00`, exactly as written (no rounding, no float)."""
    Decimal(amount)  # raises InvalidOperation for text that is not a number
    sign = "-" if amount.startswith("-") else ""
    whole, dot, fraction = amount.removeprefix("-").partition(".")
    grouped = f"{int(whole):,}" if whole.isdigit() else whole
    return f"{sign}{grouped}{dot}{fraction}"
