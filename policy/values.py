"""Values as the evaluator sees them: the marker for an absent field, exact decimals, trace rendering."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from policy.decimals import parse_decimal

__all__ = ["MISSING", "cached_decimal", "render_value"]

# What a field path yields when the request has no such field (distinct from JSON null).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
_encode = msgspec.json.encode


_DECIMAL_CACHE: dict[Any, Decimal | None] = {}
_DECIMAL_CACHE_SIZE = 4096


def cached_decimal(value: Any) -> Decimal | None:
    """:func:`parse_decimal` with a small cache for strings: amounts repeat across rules and requests."""
    if type(value) is not str:
        return parse_decimal(value)
    number = _DECIMAL_CACHE.get(value, MISSING)
    if number is MISSING:
        number = parse_decimal(value)
        if len(_DECIMAL_CACHE) >= _DECIMAL_CACHE_SIZE:
            _DECIMAL_CACHE.clear()
        _DECIMAL_CACHE[value] = number
    return number


def render_value(value: Any) -> str:
    """Render a value for the explain trace: JSON cut at 80 characters; ``<missing>`` when absent.

    Large or deep containers render as ``[...]``/``{...}``, so the cost stays small whatever the request.
    """
    if type(value) is str:
        value = value[:80]
    elif value is MISSING:
        return "<missing>"
    elif isinstance(value, dict | list) and not _is_small(value):
        return "[...]" if isinstance(value, list) else "{...}"
    try:
        text = _encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):  # lone surrogates, odd types
        text = repr(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _is_small(value: Any) -> bool:
    """Whether ``value`` has at most 32 nodes, nested at most 4 deep."""
    budget = 32
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > 4:
            return False
        if isinstance(item, dict | list):
            if len(item) > budget:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True
