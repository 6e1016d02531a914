"""The vocabulary of a ``verdict.policy/v1`` document and of the JSON values in it.

A document is a plain JSON object (see ``examples/policy.yaml``)::

    schema: verdict.policy/v1          # required
    default: DENY                      # ALLOW | ESCALATE | DENY; DENY when absent
    verdict_ttl_seconds: 60            # 1..3600; 60 when absent
    lists: {name: [value, ...]}        # named lists for in/not_in and CEL
    rules: [rule, ...]                 # at least one, evaluated in order
    defaults: {requested_approvals: {threshold, roles}}  # who reviews `require_approval` proposals

and a rule is ``{id, decision, reason?, match?, when?, approvals?, timeout_minutes?}``
with at least one of ``match`` and ``when``. ``approvals`` is either
``{threshold: M, roles: [...]}`` (M distinct signers, each in one of the roles) or
``{all_of: [{role, min}, ...]}`` (at least ``min`` signers in each role). This module names the parts;
:mod:`policy.load` checks a document against them and :mod:`policy.compile`
turns a valid one into closures.

The stored form is the author's document after YAML -> JSON, with no defaults
filled in, so its RFC 8785 hash is what the author wrote. Field names are
never renamed; new fields get defaults (STYLE.md).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = [
    "ALLOW",
    "DECISIONS",
    "DENY",
    "ESCALATE",
    "FieldPath",
    "describe_value",
    "find_non_json_values",
    "json_equal",
    "parse_field_path",
    "parse_window",
]

SCHEMA_ID = "verdict.policy/v1"

ALLOW = "ALLOW"
ESCALATE = "ESCALATE"
DENY = "DENY"
DECISIONS = (ALLOW, ESCALATE, DENY)
DEFAULT_DECISION = DENY  # fail closed (DESIGN.md, invariant 1)

DOCUMENT_FIELDS = (
    "schema",
    "default",
    "verdict_ttl_seconds",
    "lists",
    "rules",
    "risk",
    "classifications",
    "action_types",
    "undeclared_types",
    "limits",
    "defaults",
)
# `defaults`: what applies when no rule says; `requested_approvals` is who reviews an action whose
# agent proposed it with `require_approval: true` when the policy would have allowed it.
DEFAULTS_FIELDS = ("requested_approvals",)
RULE_FIELDS = ("id", "decision", "reason", "match", "when", "approvals", "timeout_minutes")
APPROVAL_FIELDS = ("threshold", "roles", "all_of")
ROLE_QUOTA_FIELDS = ("role", "min")
MAX_APPROVERS = 32  # the most signers one requirement may ask for

VERDICT_TTL_SECONDS = (1, 3600, 60)  # (min, max, default)
TIMEOUT_MINUTES = (1, 43200, 1440)  # (min, max, default): up to 30 days, 24 h when absent

RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# List names are CEL identifiers too, so `lists.blocked_vendors` works in a `when`.
LIST_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A reason is a stable machine code; no ':' so it can never look like `policy_error:<id>`.
REASON = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
FIELD_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")

EQUALITY_OPERATORS = ("eq", "ne")
MEMBERSHIP_OPERATORS = ("in", "not_in")
ORDERING_OPERATORS = ("gt", "gte", "lt", "lte")
OPERATORS = (*EQUALITY_OPERATORS, *MEMBERSHIP_OPERATORS, *ORDERING_OPERATORS, "exists")

# RFC 8785 §3.2.2.3: integers beyond 2**53 - 1 do not survive canonical JSON.
MAX_SAFE_INTEGER = 2**53 - 1
# Deepest nesting accepted in a document, and in a request value handed to CEL. A real policy
# nests about 8 deep. The bound matters: importing eth-account (py_ecc) raises the recursion limit
# to 100000, and recursive C parsers (json, msgspec, cel) then overflow the C stack on deep input
# instead of raising RecursionError.
MAX_DEPTH = 64

# Field roots, in the order the evaluator passes them (see policy.compile). The last three are
# derived by the evaluator (risk, classification) or supplied by the gateway (context).
ROOTS = ("action", "agent", "tenant", "risk", "classification", "context")
RISK_ROOT, CLASSIFICATION_ROOT, CONTEXT_ROOT = 3, 4, 5
FIXED_FIELDS = (
    "agent.id",
    "agent.name",
    "tenant.id",
    "tenant.name",
    "tenant.timezone",
    "risk.score",
    "risk.level",
    "classification.tier",
    "classification.resource_type",
    "context.vendor.first_seen",
    "context.vendor.prior_count",
)
# `context.agent.spend.<window>` and `context.agent.count.<window>`, e.g. `context.agent.spend.24h`.
CONTEXT_WINDOW_KINDS = ("spend", "count")
WINDOW = re.compile(r"([1-9][0-9]{0,4})([smhd])")
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 366 * 86400


class FieldPath(NamedTuple):
    """A dotted path such as ``action.payee.iban``: root index into ``ROOTS`` and the keys below it."""

    text: str
    root: int
    keys: tuple[str, ...]


def parse_field_path(text: str) -> FieldPath | None:
    """Return the path ``text`` names, or ``None`` if it is not one a policy may test.

    Allowed: ``action.<key>[.<key>...]`` (keys match ``[A-Za-z0-9_-]{1,64}``,
    at most 8 deep), the fixed fields :data:`FIXED_FIELDS` (``agent.id``,
    ``risk.score``, ``context.vendor.first_seen`` ...) and
    ``context.agent.spend.<window>`` / ``context.agent.count.<window>``. Keys
    address mappings only; there is no list indexing.
    """
    if text in FIXED_FIELDS:
        root, *keys = text.split(".")
        return FieldPath(text, ROOTS.index(root), tuple(keys))
    parts = text.split(".")
    if (
        len(parts) == 4
        and parts[:2] == ["context", "agent"]
        and parts[2] in CONTEXT_WINDOW_KINDS
        and parse_window(parts[3]) is not None
    ):
        return FieldPath(text, CONTEXT_ROOT, tuple(parts[1:]))
    if parts[0] != "action" or not 2 <= len(parts) <= 9:
        return None
    if not all(FIELD_SEGMENT.fullmatch(part) for part in parts[1:]):
        return None
    return FieldPath(text, 0, tuple(parts[1:]))


def parse_window(text: Any) -> int | None:
    """Return the seconds a window such as ``"1m"``, ``"24h"`` or ``"7d"`` spans, or ``None``.

    Units: ``s``, ``m``, ``h``, ``d``; a positive integer count up to 366 days in all.
    """
    match = WINDOW.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    seconds = int(match.group(1)) * WINDOW_UNITS[match.group(2)]
    return seconds if seconds <= MAX_WINDOW_SECONDS else None


def describe_value(value: Any) -> str:
    """Name the JSON (or YAML) type of ``value`` for an error message, e.g. ``"a float (1.5)"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime.date):  # datetime.datetime is a subclass
        return "a YAML date/timestamp"
    if isinstance(value, bytes):
        return "binary data (YAML !!binary)"
    if isinstance(value, set | frozenset):
        return "a set (YAML !!set)"
    if isinstance(value, tuple):
        return "a pair (YAML !!omap/!!pairs)"
    return f"a {type(value).__name__}"


def find_non_json_values(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """Yield ``(path, message)`` for every part of ``value`` a policy may not hold.

    A policy holds JSON values that canonicalize exactly (RFC 8785): strings
    (no lone surrogates), integers within ±(2**53 - 1), booleans, null, lists
    and string-keyed mappings. Floats are refused everywhere, so that no
    amount is ever a float and YAML and JSON spell every number the same way.
    Nesting is limited to :data:`MAX_DEPTH`.
    """
    if value is None or isinstance(value, bool):
        return
    if depth >= MAX_DEPTH and isinstance(value, list | dict):
        yield path, f"nested deeper than {MAX_DEPTH} levels"
        return
    if isinstance(value, str):
        if not _is_valid_unicode(value):
            yield path, "string contains a lone surrogate (not valid Unicode)"
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            yield path, "integer is beyond ±(2**53 - 1); write it as a decimal string"
    elif isinstance(value, float):
        yield path, f"floats are not allowed ({value!r}); quote the number as a decimal string"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_non_json_values(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield path, f"key {key!r} is {describe_value(key)}; mapping keys must be strings"
            elif not _is_valid_unicode(key):
                yield path, "key contains a lone surrogate (not valid Unicode)"
            else:
                yield from find_non_json_values(item, f"{path}.{key}", depth + 1)
    else:
        yield path, f"{describe_value(value)} is not allowed; quote it as a string"


def json_equal(left: Any, right: Any) -> bool:
    """Say whether two JSON values are the same value, type included.

    ``True`` is not ``1``, ``1`` is not ``1.0`` and ``"5000"`` is not
    ``"5000.00"``: ``eq``/``ne``/``in``/``not_in`` compare exactly; only the
    ordering operators compare as decimals.
    """
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(item, right[key]) for key, item in left.items())
    if isinstance(left, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return bool(left == right)


def _is_valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
