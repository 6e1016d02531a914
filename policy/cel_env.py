"""The CEL environment of a rule's ``when``: its variables, its functions, and what it reads.

A ``when`` sees ``action``, ``agent``, ``tenant``, ``lists`` and ``now`` (an
aware UTC timestamp), and may call ``abi_address`` / ``abi_uint`` on an
``evm_call``'s data (:mod:`policy.abi_functions`). The ``cel`` library implements the CEL timestamp
accessors only in UTC, so the time-zone forms (``now.getHours("Europe/Berlin")``)
are registered here as functions, with the spec's numbering (see
:data:`TIME_FUNCTIONS`).

Converting Python values into CEL costs about a microsecond per string, so
each evaluation converts only what the policy's expressions read: when every
use of a root is a plain field selection (``action.type``), only those keys
are handed over; any other use (``action["x"]``, ``size(action)``, a
comprehension over it) hands over the whole root. The analysis runs on CEL
tokens, is cross-checked against ``Program.variables()`` and falls back to the
whole root whenever in doubt.
"""

from __future__ import annotations

import datetime
import functools
import re
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import cel

from policy.abi_functions import ABI_FUNCTIONS
from policy.document import MAX_DEPTH, describe_value, parse_window
from policy.errors import RuleEvaluationError

__all__ = ["CelScope", "Expression", "compile_expression", "resolve_time_zone", "run_expression"]

ROOT_VARIABLES = frozenset({"action", "agent", "tenant", "lists", "now", "risk", "classification", "context"})
# Roots handed to CEL key by key when the expression allows it.
NARROWABLE_ROOTS = ("action", "agent", "tenant", "lists", "risk", "classification", "context")
# CEL type identifiers show up in Program.variables() (`type(x) == int`); `optional` for optional.of().
TYPE_NAMES = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type", "optional"}
)
# The cel library's native functions, as Program.functions() names them (operators aside).
BUILTIN_FUNCTIONS = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "bytes"}
    | {"timestamp", "duration", "dyn", "type", "of", "none", "ofNonZeroValue", "value", "hasValue", "or"}
    | {"orValue"}
)
COMPREHENSION_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

# CEL lexical grammar (cel-spec, syntax.md), enough to find identifiers outside string literals.
_TOKEN = re.compile(
    r"""
    (?P<skip>\s+|//[^\n]*)
    |(?P<string>
        [bB]?[rR](?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n\r]*"|'[^'\n\r]*')
        |[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
                |"(?:\\.|[^"\\\n\r])*"|'(?:\\.|[^'\\\n\r])*'))
    |(?P<number>0[xX][0-9a-fA-F]+[uU]?|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?[uU]?)
    |(?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
    |(?P<punct>\S)
    """,
    re.VERBOSE,
)
_PLAIN_STRING = re.compile(r"""(?:"([^"\\]*)"|'([^'\\]*)')""")


class Token(NamedTuple):
    kind: str
    text: str


class Expression(NamedTuple):
    """A compiled ``when`` and what it reads.

    ``reads`` maps each root in :data:`NARROWABLE_ROOTS` the expression uses to
    the keys it selects, or to ``None`` when it needs the whole root.
    """

    source: str
    program: Any  # cel.Program
    reads: dict[str, frozenset[str] | None]
    reads_now: bool
    functions: frozenset[str]
    context_paths: frozenset[str] = frozenset()  # e.g. {"vendor.first_seen", "agent.spend.24h"}
    native: Any = None  # a policy.native_when.NativeWhen running it without CEL, if it has one


def compile_expression(source: str, list_names: Iterable[str]) -> tuple[Expression | None, list[str]]:
    """Compile a ``when`` and check what it refers to.

    Returns the expression (``None`` if it does not compile) and a message for
    each problem: a syntax error, a variable other than the five roots (and
    comprehension variables and CEL type names), a function the environment
    lacks, a ``lists.<name>`` that is not in the document, or a literal time
    zone that does not exist. Never raises.

    A name bound by a comprehension (``x`` in ``l.exists(x, x > 1)``) is listed
    by ``Program.variables()`` like any other; such names are accepted
    everywhere in the expression, so a stray free use of one is caught only at
    evaluation time, where it is an error and the rule denies.
    """
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError, TypeError) as error:
        return None, [f"CEL syntax error: {_summarize_cel_error(error)}"]
    tokens = [Token(match.lastgroup or "", match.group()) for match in _TOKEN.finditer(source)]
    tokens = [token for token in tokens if token.kind != "skip"]
    variables = set(program.variables())
    functions = set(program.functions())
    problems = []
    unknown = variables - ROOT_VARIABLES - TYPE_NAMES - _find_bound_names(tokens)
    for name in sorted(unknown):
        problems.append(
            f"unknown variable '{name}'; a `when` may read action, agent, tenant, lists, now, "
            "risk, classification and context"
        )
    for name in sorted(functions):
        if (
            name[0].isalpha()
            and name not in BUILTIN_FUNCTIONS
            and name not in TIME_FUNCTIONS
            and name not in TENANT_TIME_FUNCTIONS
            and name not in ABI_FUNCTIONS
        ):
            problems.append(f"unknown function '{name}'")
    reads = _find_reads(tokens, variables)
    known_lists = set(list_names)
    for name in sorted((reads.get("lists") or set()) - known_lists):
        problems.append(f"unknown list 'lists.{name}'")
    for zone in _find_literal_time_zones(tokens):
        try:
            resolve_time_zone(zone)
        except ValueError as error:
            problems.append(str(error))
    context_paths, context_problems = _find_context_paths(tokens) if "context" in variables else (set(), [])
    problems.extend(context_problems)
    expression = Expression(
        source,
        program,
        reads,
        "now" in variables,
        frozenset(functions & (TIME_FUNCTIONS.keys() | TENANT_TIME_FUNCTIONS | ABI_FUNCTIONS.keys())),
        frozenset(context_paths),
    )
    return expression, problems


_CONTEXT_USE = (
    "use context.vendor.first_seen, context.vendor.prior_count, "
    'context.agent.spend["<window>"] or context.agent.count["<window>"] (window such as "24h")'
)


def _find_context_paths(tokens: list[Token]) -> tuple[set[str], list[str]]:
    """The history values a ``when`` reads (``vendor.first_seen``, ``agent.spend.24h``), exactly.

    The gateway queries only what policies read, so every use of ``context``
    must name a whole value; anything else is a problem.
    """
    paths, problems = set(), []
    end = Token("end", "")
    padded = [*tokens, end, end, end, end, end, end, end]
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text != "context" or (index and tokens[index - 1].text == "."):
            continue
        dot1, first, dot2, second, opener, key, closer = padded[index + 1 : index + 8]
        if dot1.text == "." and first.text == "vendor" and dot2.text == "." and second.kind == "ident":
            if second.text in ("first_seen", "prior_count"):
                paths.add(f"vendor.{second.text}")
                continue
        if (
            dot1.text == "."
            and first.text == "agent"
            and dot2.text == "."
            and second.text in ("spend", "count")
            and opener.text == "["
            and key.kind == "string"
            and closer.text == "]"
        ):
            plain = _PLAIN_STRING.fullmatch(key.text)
            window = (plain.group(1) if plain.group(1) is not None else plain.group(2)) if plain else None
            if window is not None and parse_window(window) is not None:
                paths.add(f"agent.{second.text}.{window}")
                continue
        problems.append(f"unsupported use of `context`; {_CONTEXT_USE}")
    return paths, problems


def _summarize_cel_error(error: Exception) -> str:
    text = str(error)
    marker = "ERROR: <input>:"
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.split("\n", 1)[0].strip()


def _find_bound_names(tokens: list[Token]) -> set[str]:
    """Names bound by comprehension macros: the ``x`` in ``.exists(x, ...)``."""
    bound = set()
    for index in range(1, len(tokens) - 3):
        if (
            tokens[index].text in COMPREHENSION_MACROS
            and tokens[index - 1].text == "."
            and tokens[index + 1].text == "("
            and tokens[index + 2].kind == "ident"
            and tokens[index + 3].text == ","
        ):
            bound.add(tokens[index + 2].text)
    return bound


def _find_reads(tokens: list[Token], variables: set[str]) -> dict[str, frozenset[str] | None]:
    """Map each root the expression uses to the keys it selects, or ``None`` for the whole root."""
    keys: dict[str, set[str] | None] = {}
    end = Token("end", "")
    padded = [*tokens, end, end, end]
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in NARROWABLE_ROOTS:
            continue
        if index and tokens[index - 1].text == ".":
            continue  # `x.action` selects a field of something else
        selected = keys.setdefault(token.text, set())
        if selected is None:
            continue
        dot, field, after = padded[index + 1 : index + 4]
        if dot.text == "." and field.kind == "ident" and after.text != "(":
            selected.add(field.text)
        else:
            keys[token.text] = None
    for root in NARROWABLE_ROOTS:
        if root in variables and root not in keys:
            keys[root] = None  # the tokens missed a use the parser saw: take no chances
    return {root: None if selected is None else frozenset(selected) for root, selected in keys.items()}


def _find_literal_time_zones(tokens: list[Token]) -> list[str]:
    """Time zones written as literals in ``.getHours("Europe/Berlin")`` and the like."""
    zones = []
    for index in range(1, len(tokens) - 3):
        if (
            tokens[index].text in TIME_FUNCTIONS
            and tokens[index - 1].text == "."
            and tokens[index + 1].text == "("
            and tokens[index + 2].kind == "string"
            and tokens[index + 3].text == ")"
        ):
            plain = _PLAIN_STRING.fullmatch(tokens[index + 2].text)
            if plain:
                zones.append(plain.group(1) if plain.group(1) is not None else plain.group(2))
    return zones


# -- Time zones ------------------------------------------------------------------------------------

_UTC = datetime.UTC
_OFFSET = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")


@functools.lru_cache(maxsize=256)
def resolve_time_zone(name: str) -> datetime.tzinfo:
    """Return the time zone a CEL time-zone argument names.

    CEL (cel-spec, langdef.md "Timestamp functions") accepts an IANA name
    (``"Europe/Berlin"``, ``"UTC"``) or a fixed offset ``"+05:30"``/``"-08:00"``.

    Raises:
        ValueError: no such time zone.
    """
    if name == "UTC":
        return _UTC
    offset = _OFFSET.fullmatch(name)
    if offset:
        sign, hours, minutes = offset.group(1), int(offset.group(2)), int(offset.group(3))
        if hours < 24 and minutes < 60:
            delta = datetime.timedelta(hours=hours, minutes=minutes)
            return datetime.timezone(-delta if sign == "-" else delta)
    else:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ValueError(f"unknown time zone {name!r}")


def _make_time_function(name: str, part: Callable[[datetime.datetime], int]) -> Callable[..., int]:
    def time_function(moment: Any, zone: Any = None) -> int:
        if not isinstance(moment, datetime.datetime):
            raise TypeError(f"{name} with a time zone needs a timestamp, got {describe_value(moment)}")
        if zone is None:
            return part(moment.astimezone(_UTC))
        if not isinstance(zone, str):
            raise TypeError(f"{name} needs a time zone string, got {describe_value(zone)}")
        return part(moment.astimezone(resolve_time_zone(zone)))

    time_function.__name__ = name
    return time_function


# cel-spec langdef.md: months, days of the year and days of the month count from 0 (getDate from 1);
# days of the week count from 0 = Sunday.
TIME_FUNCTIONS: dict[str, Callable[..., int]] = {
    name: _make_time_function(name, part)
    for name, part in {
        "getFullYear": lambda moment: moment.year,
        "getMonth": lambda moment: moment.month - 1,
        "getDayOfYear": lambda moment: moment.timetuple().tm_yday - 1,
        "getDayOfMonth": lambda moment: moment.day - 1,
        "getDate": lambda moment: moment.day,
        "getDayOfWeek": lambda moment: moment.isoweekday() % 7,
        "getHours": lambda moment: moment.hour,
        "getMinutes": lambda moment: moment.minute,
        "getSeconds": lambda moment: moment.second,
        "getMilliseconds": lambda moment: moment.microsecond // 1000,
    }.items()
}


# Helpers in the tenant's time zone (`tenant.timezone`, an IANA name; UTC when absent). They are bound
# to the zone when the context is built, so a `when` never names the zone itself.
TENANT_TIME_FUNCTIONS = frozenset({"business_hours", "is_weekend"})
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _parse_clock(text: Any) -> int:
    match = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f'business_hours takes times as "HH:MM" strings, got {describe_value(text)}')
    return int(match.group(1)) * 60 + int(match.group(2))


def _local(moment: Any, zone: datetime.tzinfo, name: str) -> datetime.datetime:
    if not isinstance(moment, datetime.datetime):
        raise TypeError(f"{name} needs a timestamp, got {describe_value(moment)}")
    return moment.astimezone(zone)


@functools.lru_cache(maxsize=64)
def make_tenant_time_functions(zone: datetime.tzinfo) -> dict[str, Callable[..., bool]]:
    """``business_hours(now, "09:00", "17:00")`` and ``is_weekend(now)`` in ``zone``.

    ``business_hours`` is true Monday to Friday from the start time (inclusive)
    to the end time (exclusive), in local wall-clock time, so it follows
    daylight saving time; an end before the start spans midnight.
    """

    def business_hours(moment: Any, start: Any, end: Any) -> bool:
        local = _local(moment, zone, "business_hours")
        opens, closes = _parse_clock(start), _parse_clock(end)
        if local.isoweekday() > 5:
            return False
        minute = local.hour * 60 + local.minute
        return opens <= minute < closes if opens <= closes else (minute >= opens or minute < closes)

    def is_weekend(moment: Any) -> bool:
        return _local(moment, zone, "is_weekend").isoweekday() > 5

    return {"business_hours": business_hours, "is_weekend": is_weekend}


# -- Evaluation ------------------------------------------------------------------------------------

# cel maps evaluation failures onto these: KeyError (no such key), TypeError (no such overload),
# RuntimeError (undefined name, failing function), ValueError (unconvertible value), IndexError,
# ZeroDivisionError/OverflowError.
_CEL_ERRORS = (RuntimeError, TypeError, ValueError, LookupError, ArithmeticError)
# CEL integers are int64 or uint64; cel silently turns a larger Python int into a double.
_CEL_INT_RANGE = (-(2**63), 2**64 - 1)


class CelScope:
    """Builds, once per evaluation, the CEL context every ``when`` of a policy reads from.

    Immutable after construction and safe to share between threads; each
    :meth:`build_context` returns a fresh ``cel.Context``.
    """

    __slots__ = ("_functions", "_lists", "_reads", "_reads_now", "_tenant_functions", "reads_request_data")

    def __init__(self, expressions: Sequence[Expression], lists: dict[str, list[Any]]) -> None:
        reads: dict[str, set[str] | None] = {}
        for expression in expressions:
            for root, keys in expression.reads.items():
                known = reads.setdefault(root, set())
                reads[root] = None if known is None or keys is None else known | keys
        self._reads = tuple(
            (root, None if keys is None else tuple(sorted(keys))) for root, keys in reads.items()
        )
        self._reads_now = any(expression.reads_now for expression in expressions)
        #: Whether the context holds request values (not only `now` and the document's lists), so
        #: that building it can fail on the request's data.
        self.reads_request_data = any(root != "lists" for root, _ in self._reads)
        names = set().union(*(expression.functions for expression in expressions))
        helpers = {**TIME_FUNCTIONS, **ABI_FUNCTIONS}
        self._functions = {name: helpers[name] for name in sorted(names) if name in helpers}
        self._tenant_functions = bool(names & TENANT_TIME_FUNCTIONS)
        lists_keys = reads.get("lists", ())
        self._lists = {
            name: list(items) for name, items in lists.items() if lists_keys is None or name in lists_keys
        }

    def build_context(
        self, action: Any, agent: Any, tenant: Any, now: Any, extra: dict[str, Any] | None = None
    ) -> cel.Context:
        """Return a context holding what the policy's expressions read from this request.

        ``extra`` holds the derived roots ``risk``, ``classification`` and
        ``context`` (``None`` when the evaluation has none).

        Raises:
            RuleEvaluationError: ``now`` is not an aware datetime, the tenant's
                ``timezone`` is unknown (when a helper needs it), or a value
                read is nested deeper than ``MAX_DEPTH``, holds an integer
                outside CEL's int64/uint64 range or anything else CEL cannot
                represent.
        """
        roots = {"action": action, "agent": agent, "tenant": tenant, "lists": self._lists}
        if extra:
            roots.update((name, value if value is not None else {}) for name, value in extra.items())
        variables: dict[str, Any] = {}
        for root, keys in self._reads:
            value = roots.get(root, {})
            if root != "lists":  # the document's own lists were validated at load
                if keys is not None and isinstance(value, dict):
                    value = {key: value[key] for key in keys if key in value}
                _check_cel_value(value, root)
            variables[root] = value
        if self._reads_now:
            if not isinstance(now, datetime.datetime) or now.utcoffset() is None:
                raise RuleEvaluationError("`now` is not a timezone-aware datetime")
            # cel reads the offset as given; CEL's zone-less accessors mean UTC.
            variables["now"] = now.astimezone(_UTC)
        functions = self._functions
        if self._tenant_functions:
            zone_name = tenant.get("timezone", "UTC") if isinstance(tenant, dict) else "UTC"
            try:
                zone = resolve_time_zone(zone_name) if isinstance(zone_name, str) else None
            except ValueError:
                zone = None
            if zone is None:
                raise RuleEvaluationError(
                    f"tenant.timezone {render_zone(zone_name)} is not a known time zone"
                )
            functions = {**functions, **make_tenant_time_functions(zone)}
        try:
            return cel.Context(variables, functions)
        except _CEL_ERRORS as error:  # a value cel cannot convert
            raise RuleEvaluationError(_describe_cel_failure(error)) from None


def render_zone(value: Any) -> str:
    return repr(value[:64]) if isinstance(value, str) else describe_value(value)


def run_expression(expression: Expression, context: cel.Context) -> bool:
    """Evaluate a ``when`` in ``context``.

    Raises:
        RuleEvaluationError: CEL failed (missing key, no such overload,
            unknown time zone, ...) or the result is not a bool.
    """
    try:
        result = expression.program.execute(context)
    except _CEL_ERRORS as error:
        raise RuleEvaluationError(_describe_cel_failure(error)) from None
    if type(result) is not bool:
        raise RuleEvaluationError(f"`when` must evaluate to a bool, got {describe_value(result)}")
    return result


def _describe_cel_failure(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"CEL error: no such key: {error}"
    text = str(error).split("\n", 1)[0]
    return f"CEL error: {text[:300]}"


def _check_cel_value(value: Any, path: str, depth: int = 0) -> None:
    """Refuse what cel would crash on or silently round; ``path`` names the root's key, not deeper."""
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            raise RuleEvaluationError(f"{path} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_cel_value(item, f"{path}.{key}" if depth == 0 else path, depth + 1)
        else:
            for item in value:
                _check_cel_value(item, path, depth + 1)
    elif isinstance(value, int) and not _CEL_INT_RANGE[0] <= value <= _CEL_INT_RANGE[1]:
        raise RuleEvaluationError(f"{path} holds an integer outside CEL's 64-bit range; send it as a string")
