"""Exact decimal values for the ordering operators (``gt``, ``gte``, ``lt``, ``lte``).

Money is a decimal string end to end (DESIGN.md, invariant 5). A value takes
part in an ordering comparison only if it is an ``int`` (never a ``bool``) or a
string in the plain form ``-?[0-9]+(\\.[0-9]+)?``: no exponent, no ``+``, no
spaces, no ``NaN``/``Infinity``, no ``_`` separators, no leading or trailing
dot. Such a string converts to :class:`decimal.Decimal` exactly (construction
from a string never rounds) and ``Decimal`` comparison is exact whatever the
context precision, so ``"5000.000000000000000001" > "5000"`` holds. Floats are
refused outright: by the time a float exists, the amount has already been
rounded.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from policy.document import describe_value

__all__ = [
    "AMOUNT_TEXT",
    "DECIMAL_TEXT",
    "MAX_AMOUNT_DIGITS",
    "explain_not_amount",
    "explain_not_decimal",
    "parse_decimal",
]

# [0-9] rather than \d: \d also matches non-ASCII digits such as "٣".
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# An amount as an action may carry it (checked at intake, before any rule): DECIMAL_TEXT without
# leading zeros and with at most MAX_AMOUNT_DIGITS digits. Every amount is therefore a decimal
# the ordering operators and limits read exactly; "007", "+7", "7.", "7e3", "7_000", "NaN" and
# full-width digits are not amounts.
AMOUNT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
MAX_AMOUNT_DIGITS = 78  # as many as 2**256 - 1, the largest token amount on an EVM chain


def parse_decimal(value: Any) -> Decimal | None:
    """Return ``value`` as an exact ``Decimal``, or ``None`` if it is not a plain decimal.

    Accepts an ``int`` (not ``bool``) or a string matching :data:`DECIMAL_TEXT`
    in full. Never raises.
    """
    value_type = type(value)
    if value_type is str:
        return Decimal(value) if DECIMAL_TEXT.fullmatch(value) else None
    if value_type is int:
        return Decimal(value)
    return None


def explain_not_decimal(value: Any) -> str:
    """Say why ``value`` is not usable in an ordering comparison (for messages and traces)."""
    if isinstance(value, float):
        hint = f' such as "{value!r}"' if math.isfinite(value) else ""
        return f"is a float ({value!r}); amounts must be decimal strings{hint}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return (
            f"is the string {shown!r}, which is not a plain decimal "
            "(digits, an optional leading '-' and an optional fraction; no exponent, '+', spaces or NaN)"
        )
    return f"is {describe_value(value)}, not a decimal string or integer"


def explain_not_amount(value: Any, *, allow_negative: bool = False) -> str | None:
    """``None`` when ``value`` is an amount (:data:`AMOUNT_TEXT`, at most :data:`MAX_AMOUNT_DIGITS`
    digits, not negative unless ``allow_negative``), else why not, without echoing ``value``.
    Never raises. ``"-0"`` counts as negative: it is the sign that is refused."""
    if type(value) is not str:
        return f'is {describe_value(value)}; an amount is a decimal string such as "7800.00"'
    if not AMOUNT_TEXT.fullmatch(value):
        return (
            "is not a plain decimal string (ASCII digits, an optional leading '-', no leading zeros,"
            " an optional fraction; no exponent, '+', '_', spaces or NaN)"
        )
    digits = len(value) - value.startswith("-") - ("." in value)
    if digits > MAX_AMOUNT_DIGITS:
        return f"has {digits} digits; an amount has at most {MAX_AMOUNT_DIGITS}"
    if value.startswith("-") and not allow_negative:
        return "is negative, and the action type does not allow negative amounts (allow_negative)"
    return None
