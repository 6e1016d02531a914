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

__all__ = ["DECIMAL_TEXT", "explain_not_decimal", "parse_decimal"]

# [0-9] rather than \d: \d also matches non-ASCII digits such as "٣".
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


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
