"""``when`` expressions that are one call of a tenant time helper, run in Python without CEL.

The ``after-hours`` risk factor of a typical document is ``!business_hours(now, "08:00", "18:00")``;
building a CEL context to run it costs about ten times the call itself. The compiler recognises
these forms (whitespace aside) and gives the expression a native function:

- ``business_hours(now, "HH:MM", "HH:MM")`` and ``!business_hours(now, "HH:MM", "HH:MM")``,
  with valid times written as plain string literals;
- ``is_weekend(now)`` and ``!is_weekend(now)``.

The native function calls the same helpers CEL calls
(:func:`policy.cel_env.make_tenant_time_functions`) on the same UTC ``now``. It returns ``None``
whenever CEL could fail or differ (``now`` not an aware datetime, an unknown tenant time zone, a
time out of range): the evaluation then takes the CEL path, which reports the failure exactly as
before. :meth:`policy.matcher.EvaluationState.check_when` also takes the CEL path whenever the
policy's context reads request data (building it could fail on that data).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from policy.cel_env import make_tenant_time_functions, resolve_time_zone

__all__ = ["NativeWhen", "compile_native_when"]

# (now, tenant) -> the `when`'s bool, or None to take the CEL path.
NativeWhen = Callable[[Any, Any], bool | None]

_UTC = datetime.UTC
_CLOCK_LITERAL = (
    r"""(?:"([01][0-9]:[0-5][0-9]|2[0-3]:[0-5][0-9])"|'([01][0-9]:[0-5][0-9]|2[0-3]:[0-5][0-9])')"""
)
_BUSINESS_HOURS = re.compile(
    rf"\s*(!?)\s*business_hours\s*\(\s*now\s*,\s*{_CLOCK_LITERAL}\s*,\s*{_CLOCK_LITERAL}\s*\)\s*"
)
_IS_WEEKEND = re.compile(r"\s*(!?)\s*is_weekend\s*\(\s*now\s*\)\s*")


def compile_native_when(source: str) -> NativeWhen | None:
    """The native function of a ``when`` in one of the forms above, else ``None`` (CEL runs it)."""
    match = _BUSINESS_HOURS.fullmatch(source)
    if match:
        negate, start, end = (
            bool(match.group(1)),
            match.group(2) or match.group(3),
            match.group(4) or match.group(5),
        )
        return _make_native("business_hours", (start, end), negate)
    match = _IS_WEEKEND.fullmatch(source)
    if match:
        return _make_native("is_weekend", (), bool(match.group(1)))
    return None


def _make_native(helper: str, arguments: tuple[str, ...], negate: bool) -> NativeWhen:
    def run_native(now: Any, tenant: Any) -> bool | None:
        # The checks of CelScope.build_context, in its order: `now`, then the tenant's zone.
        if not isinstance(now, datetime.datetime) or now.utcoffset() is None:
            return None
        zone_name = tenant.get("timezone", "UTC") if isinstance(tenant, dict) else "UTC"
        if not isinstance(zone_name, str):
            return None
        try:
            zone = resolve_time_zone(zone_name)
            result = make_tenant_time_functions(zone)[helper](now.astimezone(_UTC), *arguments)
        except (ValueError, OverflowError):  # unknown zone, a time out of range: CEL says which
            return None
        return result is not negate

    return run_native
