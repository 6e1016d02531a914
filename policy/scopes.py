"""Agent scopes: what one agent may propose at all, checked before any rule.

A scope is set per agent by a tenant admin (the gateway stores and audits it)::

    {"action_types": ["pay_invoice"], "assets": ["USDC", "EURC"], "max_amount": "10000"}

Every field is optional; an absent field does not restrict. A proposal outside
its scope is DENY with reason ``scope_violation:<which>``, checked in this
order: ``action_type``, ``asset``, ``amount``. Fail closed: with ``assets``
set, an action without a readable asset violates; with ``max_amount`` set, an
action without a decimal amount violates. Where the asset and the amount are
read comes from the action's type (``asset_field``/``amount_field`` in the
policy's ``action_types``), else ``asset`` and ``amount``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from policy.decimals import DECIMAL_TEXT
from policy.document import describe_value
from policy.errors import PolicyError, Problem

__all__ = [
    "DEFAULT_FIELDS",
    "ActionFields",
    "AgentScope",
    "ScopeInvalid",
    "check_scope",
    "load_scope",
    "read_field",
    "validate_scope",
]

SCOPE_FIELDS = ("action_types", "assets", "max_amount")
SCOPE_VIOLATION = "scope_violation:"
_ABSENT: Any = object()


class ActionFields(NamedTuple):
    """Where an action of some type keeps its amount and asset: key paths inside the action."""

    amount: tuple[str, ...] = ("amount",)
    asset: tuple[str, ...] = ("asset",)


DEFAULT_FIELDS = ActionFields()


class AgentScope(NamedTuple):
    """A validated scope (see :func:`load_scope`); ``None`` fields do not restrict."""

    action_types: frozenset[str] | None = None
    assets: frozenset[str] | None = None
    max_amount: Decimal | None = None


class ScopeInvalid(PolicyError):
    """A scope document does not validate; ``problems`` lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("scope is invalid: " + "; ".join(f"{p.path}: {p.message}" for p in problems))


def validate_scope(value: Any) -> list[Problem]:
    """Every problem with a scope document (empty when valid). Never raises."""
    if not isinstance(value, dict):
        return [Problem(path="", message=f"a scope must be a mapping, got {describe_value(value)}")]
    problems = []
    for key in value:
        if key not in SCOPE_FIELDS:
            message = f"unknown field {key!r}; expected one of {', '.join(SCOPE_FIELDS)}"
            problems.append(Problem(path=str(key), message=message))
    for key in ("action_types", "assets"):
        if key in value:
            items = value[key]
            if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
                message = f"must be a list of non-empty strings, got {describe_value(items)}"
                problems.append(Problem(path=key, message=message))
    if "max_amount" in value:
        amount = value["max_amount"]
        if not (isinstance(amount, str) and DECIMAL_TEXT.fullmatch(amount) and not amount.startswith("-")):
            message = f'must be a non-negative decimal string such as "10000", got {describe_value(amount)}'
            problems.append(Problem(path="max_amount", message=message))
    return problems


def load_scope(value: Any) -> AgentScope:
    """Validate a scope document and return it ready for :func:`check_scope`.

    Raises:
        ScopeInvalid: the document has problems (all of them are listed).
    """
    problems = validate_scope(value)
    if problems:
        raise ScopeInvalid(problems)
    return AgentScope(
        action_types=frozenset(value["action_types"]) if "action_types" in value else None,
        assets=frozenset(value["assets"]) if "assets" in value else None,
        max_amount=Decimal(value["max_amount"]) if "max_amount" in value else None,
    )


def read_field(action: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value at ``keys`` inside ``action``, or a private marker when absent."""
    value: Any = action
    for key in keys:
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(key, _ABSENT)
    return value


def check_scope(
    scope: AgentScope, action: Mapping[str, Any], fields: ActionFields = DEFAULT_FIELDS
) -> str | None:
    """Return ``scope_violation:<action_type|asset|amount>`` if ``action`` is outside ``scope``, else ``None``."""
    if scope.action_types is not None and action.get("type") not in scope.action_types:
        return SCOPE_VIOLATION + "action_type"
    if scope.assets is not None:
        asset = read_field(action, fields.asset)
        if not isinstance(asset, str) or asset not in scope.assets:
            return SCOPE_VIOLATION + "asset"
    if scope.max_amount is not None:
        amount = read_field(action, fields.amount)
        if not isinstance(amount, str) or not DECIMAL_TEXT.fullmatch(amount):
            return SCOPE_VIOLATION + "amount"
        if Decimal(amount) > scope.max_amount:
            return SCOPE_VIOLATION + "amount"
    return None
