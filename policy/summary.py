"""The sentence an approver reads: summary templates of action types, and a default summary.

A template such as ``"Pay {amount} {asset} to {payee.name} for {invoice}"``
names fields of the action by key path (``[A-Za-z0-9_-]`` keys joined by
dots); ``{{`` and ``}}`` stand for literal braces. Nothing else is
interpreted: this is not Python's ``str.format`` (no attribute access, no
indexing, no format specs), so a template can never reach beyond the action.

Rendering: the type's amount field is shown with thousands separators,
digit for digit from its decimal string (``"7800.00"`` -> ``7,800.00``; never
through a float); other strings as they are, numbers and booleans as JSON,
lists and mappings as ``[...]``/``{...}``. A missing field shows as
``<missing payee.name>``, so a gap is visible rather than silently empty.
Control characters are replaced by spaces and each value is cut at 120
characters, so an agent cannot forge extra lines in what an approver reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from policy.decimals import DECIMAL_TEXT
from policy.scopes import ActionFields, read_field

__all__ = ["Template", "compile_template", "format_amount", "render_default_summary", "render_template"]

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_KEY_PATH = re.compile(r"[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){0,7}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_VALUE_CHARS = 120
_ABSENT = read_field({}, ("x",))


class Template(NamedTuple):
    """A compiled template: literal text and key paths, alternating (``parts[1::2]`` are paths)."""

    source: str
    parts: tuple[Any, ...]


def compile_template(source: str) -> tuple[Template | None, list[str]]:
    """Compile a summary template; returns it (``None`` on problems) and a message per problem."""
    parts: list[Any] = []
    literal: list[str] = []
    problems = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        literal.append(source[position : match.start()])
        position = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is None:
            problems.append(
                f"unbalanced {token!r} at character {match.start()}; write {token * 2} for a brace"
            )
        elif not _KEY_PATH.fullmatch(match.group(1)):
            problems.append(
                f"placeholder {{{match.group(1)}}} must be a key path of the action such as {{payee.name}}"
            )
        else:
            parts.extend(("".join(literal), tuple(match.group(1).split("."))))
            literal = []
    literal.append(source[position:])
    parts.append("".join(literal))
    if problems:
        return None, problems
    return Template(source, tuple(parts)), []


def format_amount(text: str) -> str:
    """``"7800.00"`` -> ``"7,800.00"``, exactly; a string that is not a plain decimal comes back as is."""
    if not DECIMAL_TEXT.fullmatch(text):
        return text
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    groups = []
    while len(whole) > 3:
        groups.append(whole[-3:])
        whole = whole[:-3]
    grouped = ",".join([whole, *reversed(groups)])
    return sign + grouped + ("." + fraction if fraction else "")


def _show(value: Any, is_amount: bool) -> str:
    if isinstance(value, str):
        text = format_amount(value) if is_amount else value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, int):
        text = format_amount(str(value)) if is_amount else str(value)
    elif isinstance(value, list):
        text = "[...]"
    elif isinstance(value, dict):
        text = "{...}"
    else:
        text = f"<{type(value).__name__}>"
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def render_template(template: Template, action: Mapping[str, Any], fields: ActionFields) -> str:
    """Fill ``template`` from ``action``. Never raises."""
    out = []
    for index, part in enumerate(template.parts):
        if index % 2 == 0:
            out.append(part)
            continue
        value = read_field(action, part)
        out.append(f"<missing {'.'.join(part)}>" if value is _ABSENT else _show(value, part == fields.amount))
    return "".join(out)


_COUNTERPARTY_KEYS = ("vendor", "payee", "recipient", "to", "counterparty")


def render_default_summary(action: Mapping[str, Any], fields: ActionFields) -> str:
    """A summary for an action whose type has no template, e.g. ``pay invoice of 7,800.00 USDC to acme-supplies``.

    The type's words, then ``of <amount> <asset>``, ``to <vendor>`` (or payee,
    recipient, to, counterparty), ``for <invoice>`` and ``on <resource_type>``
    for the fields present. Never raises.
    """
    kind = action.get("type")
    words = [_show(kind, False).replace("_", " ") if isinstance(kind, str) and kind else "action"]
    amount = read_field(action, fields.amount)
    if amount is not _ABSENT:
        words.append("of " + _show(amount, True))
        asset = read_field(action, fields.asset)
        if asset is not _ABSENT:
            words.append(_show(asset, False))
    for key in _COUNTERPARTY_KEYS:
        if key in action:
            words.append("to " + _show(action[key], False))
            break
    if "invoice" in action:
        words.append("for " + _show(action["invoice"], False))
    if "resource_type" in action:
        words.append("on " + _show(action["resource_type"], False))
    return " ".join(words)
