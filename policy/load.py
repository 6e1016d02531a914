"""Loading a policy: bytes -> JSON document -> validated -> compiled.

(1) Parse JSON or YAML into plain values: duplicate keys, NaN/Infinity and
    YAML aliases are parse errors.
(2) Validate the whole document, collecting every problem (see :mod:`policy.validate`).
(3) Compile it (:mod:`policy.compile`).
(4) Hash the document as written: RFC 8785 canonical JSON, SHA-256.

YAML is read with a restricted safe loader that follows YAML 1.2's core
schema for scalars rather than PyYAML's YAML 1.1: only ``true``/``false`` are
booleans (``yes``, ``no``, ``on``, ``NO`` stay strings) and integers are
decimal only (``010`` is 10; ``0x1F`` and ``1_000`` stay strings). Floats and
timestamps are still recognized, so that validation can reject them with a
hint to quote them, rather than letting them pass as surprising strings.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from crypto.canonical import canonicalize, sha256
from policy.compile import compile_policy
from policy.document import MAX_DEPTH
from policy.errors import DocumentUnreadable, PolicyInvalid, UnsupportedMediaType
from policy.evaluate import CompiledPolicy
from policy.validate import validate_document

__all__ = [
    "JSON_MEDIA_TYPE",
    "YAML_MEDIA_TYPES",
    "LoadedPolicy",
    "compile_document",
    "load_policy",
    "parse_document",
]

JSON_MEDIA_TYPE = "application/json"
YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A policy as published: the document as written, its canonical bytes and hash, and its compiled form.

    ``hash`` is ``"0x" + sha256(canonical).hex()``; the same document in JSON
    and in YAML has the same hash.
    """

    document: dict[str, Any]
    canonical: bytes
    hash: str
    compiled: CompiledPolicy


def load_policy(body: bytes, media_type: str = JSON_MEDIA_TYPE) -> LoadedPolicy:
    """Parse, validate and compile a policy document sent as JSON or YAML.

    ``media_type`` may carry parameters (``application/json; charset=utf-8``);
    the body must be UTF-8 either way.

    Raises:
        UnsupportedMediaType: ``media_type`` is neither JSON nor YAML.
        PolicyInvalid: the body does not parse, or the document has problems
            (all of them are listed).
    """
    document = parse_document(body, media_type)  # (1)
    compiled = compile_document(document)  # (2), (3)
    canonical = canonicalize(document)  # (4)
    return LoadedPolicy(document, canonical, "0x" + sha256(canonical).hex(), compiled)


def compile_document(document: dict[str, Any]) -> CompiledPolicy:
    """Validate and compile a JSON document, e.g. one read back from storage.

    The compiled policy keeps its own copy: later changes to ``document`` do not reach it.

    Raises:
        PolicyInvalid: the document has problems (all of them are listed).
    """
    problems = validate_document(document)
    if problems:
        raise PolicyInvalid(problems)
    return compile_policy(copy.deepcopy(document))


def parse_document(body: bytes, media_type: str = JSON_MEDIA_TYPE) -> Any:
    """Parse ``body`` into plain Python values without validating them.

    Raises:
        UnsupportedMediaType: ``media_type`` is neither JSON nor YAML.
        DocumentUnreadable: a PolicyInvalid with one problem at path ``""`` and a ``kind``:
            not UTF-8, not well-formed, duplicate keys, too deep, NaN/Infinity, YAML
            anchors, aliases or explicit tags.
    """
    essence = media_type.split(";", 1)[0].strip().lower()
    if essence == JSON_MEDIA_TYPE:
        parse = _parse_json
    elif essence in YAML_MEDIA_TYPES:
        parse = _parse_yaml
    else:
        raise UnsupportedMediaType(media_type, (JSON_MEDIA_TYPE, *YAML_MEDIA_TYPES))
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise _parse_error(
            "invalid_utf8", f"body is not UTF-8: {error.reason} at byte {error.start}"
        ) from None
    try:
        return parse(text)
    except RecursionError:
        raise _parse_error("nesting_too_deep", "document is nested too deeply") from None


def _parse_error(kind: str, message: str) -> DocumentUnreadable:
    return DocumentUnreadable(kind, message)


# -- JSON ----------------------------------------------------------------------------------------------


_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _measure_json_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, in linear time, before a recursive parser sees it.

    With escapes removed, every remaining quote delimits a string; up to the
    first syntax error this agrees with the parser, which stops there.
    """
    outside_strings = "".join(_JSON_ESCAPE.sub("", text).split('"')[0::2])
    steps = map(_BRACKET_STEP.__getitem__, _JSON_BRACKET.findall(outside_strings))
    return max(itertools.accumulate(steps), default=0)


def _parse_json(text: str) -> Any:
    if _measure_json_depth(text) > MAX_DEPTH:
        raise _parse_error("nesting_too_deep", f"document is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise _parse_error(
            "invalid_syntax", f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except _DuplicateKey as error:
        raise _parse_error("duplicate_key", f"duplicate key {error.args[0]!r}") from None
    except _NotANumber as error:
        raise _parse_error("invalid_number", f"invalid JSON: {error}") from None
    except ValueError as error:  # integers too long to convert
        raise _parse_error("invalid_syntax", f"invalid JSON: {error}") from None


class _DuplicateKey(Exception):
    pass


class _NotANumber(ValueError):
    pass


class _YamlRefused(yaml.composer.ComposerError):
    """A YAML construct a policy may not use; ``kind`` as in DocumentUnreadable."""

    def __init__(self, kind: str, message: str, mark: Any) -> None:
        super().__init__(None, None, message, mark)
        self.kind = kind


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise _NotANumber(f"{name} is not JSON")


# -- YAML ----------------------------------------------------------------------------------------------


class _PolicyYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core booleans and integers; no anchors, aliases, explicit tags
    or duplicate keys, and nothing deeper than MAX_DEPTH: what it reads is plain JSON values
    (plus floats and timestamps, which validation refuses with a hint)."""

    # Start from no implicit resolvers at all; the ones wanted are added below.
    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            message = "YAML anchors and aliases (&name, *name) are not allowed"
            raise _YamlRefused("yaml_alias", message, event.start_mark)
        if getattr(event, "tag", None) is not None:
            # `!!binary`, `!!set`, `!!merge`, `!!str 1`…: JSON has no tags, and each one is a
            # second way of reading the same text
            message = "YAML tags (!name, !!name) are not allowed"
            raise _YamlRefused("yaml_tag", message, event.start_mark)
        if self.depth > MAX_DEPTH:
            message = f"document is nested deeper than {MAX_DEPTH} levels"
            raise _YamlRefused("nesting_too_deep", message, event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        mapping = super().construct_mapping(node, deep=deep)
        if isinstance(node, yaml.MappingNode) and len(mapping) != len(node.value):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _YamlRefused("duplicate_key", f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return mapping


def _construct_decimal_int(loader: yaml.SafeLoader, node: Any) -> int:
    return int(loader.construct_scalar(node), 10)  # "010" is 10, not YAML 1.1's octal 8


_YAML_SCALARS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        list("-+0123456789."),
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (
        "tag:yaml.org,2002:timestamp",
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        list("0123456789"),
    ),
]
for _tag, _pattern, _first in _YAML_SCALARS:
    _PolicyYamlLoader.add_implicit_resolver(_tag, re.compile(_pattern, re.VERBOSE), _first)
_PolicyYamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_decimal_int)


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_PolicyYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        kind = error.kind if isinstance(error, _YamlRefused) else "invalid_syntax"
        raise _parse_error(kind, f"invalid YAML{where}: {error.problem or error.context}") from None
    except (yaml.YAMLError, ValueError) as error:
        raise _parse_error("invalid_syntax", f"invalid YAML: {error}") from None
