"""Loading documents from JSON and YAML bytes: parsing rules, hashing, media types."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import pytest
import rfc8785
import yaml

from policy import (
    DocumentUnreadable,
    LoadedPolicy,
    PolicyError,
    PolicyInvalid,
    UnsupportedMediaType,
    compile_document,
    load_policy,
)
from policy.load import _measure_json_depth, parse_document

MINIMAL_YAML = b"""
schema: verdict.policy/v1
rules:
  - {id: allow-all, decision: ALLOW, match: {}}
"""


def only_problem(body: bytes, media_type: str) -> tuple[str, str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(body, media_type)
    assert len(caught.value.problems) == 1, caught.value.problems
    problem = caught.value.problems[0]
    return problem.path, problem.message


def test_example_policy_loads(example_yaml: bytes) -> None:
    loaded = load_policy(example_yaml, "application/yaml")
    assert isinstance(loaded, LoadedPolicy)
    assert loaded.document["rules"][1]["match"]["action.amount"] == {"gt": "5000", "lte": "50000"}
    assert loaded.canonical == rfc8785.dumps(loaded.document)
    assert loaded.hash == "0x" + hashlib.sha256(loaded.canonical).hexdigest()
    assert len(loaded.hash) == 66


def test_yaml_and_json_of_one_document_have_one_hash(example_yaml: bytes) -> None:
    from_yaml = load_policy(example_yaml, "application/yaml")
    as_json = json.dumps(from_yaml.document, indent=4, sort_keys=False).encode()
    from_json = load_policy(as_json, "application/json")
    assert from_json.document == from_yaml.document
    assert from_json.canonical == from_yaml.canonical
    assert from_json.hash == from_yaml.hash
    reordered = json.dumps(dict(reversed(list(from_yaml.document.items())))).encode()
    assert load_policy(reordered).hash == from_yaml.hash


def test_document_is_kept_as_written_without_defaults() -> None:
    loaded = load_policy(MINIMAL_YAML, "text/yaml")
    assert loaded.document == {
        "schema": "verdict.policy/v1",
        "rules": [{"id": "allow-all", "decision": "ALLOW", "match": {}}],
    }
    assert loaded.compiled.verdict_ttl_seconds == 60
    assert loaded.compiled.default == "DENY"


def test_stored_document_compiles_to_the_same_policy(example_yaml: bytes) -> None:
    loaded = load_policy(example_yaml, "application/x-yaml")
    stored = json.loads(loaded.canonical)
    assert compile_document(stored).verdict_ttl_seconds == loaded.compiled.verdict_ttl_seconds


@pytest.mark.parametrize("media_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_media_type_parameters_and_case_are_ignored(media_type: str) -> None:
    body = json.dumps(yaml.safe_load(MINIMAL_YAML)).encode()
    assert load_policy(body, media_type).document["schema"] == "verdict.policy/v1"


@pytest.mark.parametrize("media_type", ["text/plain", "application/xml", ""])
def test_unsupported_media_type(media_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        load_policy(MINIMAL_YAML, media_type)
    assert isinstance(caught.value, PolicyError)
    assert caught.value.media_type == media_type


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"schema": "verdict.policy/v1",', "invalid JSON at line 1"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    ],
)
def test_json_parse_errors(body: bytes, fragment: str) -> None:
    path, message = only_problem(body, "application/json")
    assert path == ""
    assert fragment in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"rules: [\n", "invalid YAML at line"),
        (b"a: 1\na: 2\n", "duplicate key 'a'"),
        (b"base: &b {x: 1}\ncopy: *b\n", "aliases"),
        (b"a: !!python/object:os.system {}\n", "invalid YAML"),
        (b"a: 1\n---\nb: 2\n", "invalid YAML"),
        (b"a: 'caf\xe9'\n", "not UTF-8"),
        (b"a: " + b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
        (b"".join(b" " * i + b"- \n" for i in range(0, 2000, 2)), "nested deeper than 64 levels"),
    ],
)
def test_yaml_parse_errors(body: bytes, fragment: str) -> None:
    path, message = only_problem(body, "application/yaml")
    assert path == ""
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("NO", "NO"),  # the Norway problem: a country code, not false
        ("on", "on"),
        ("true", True),
        ("False", False),
        ("010", 10),  # decimal, not YAML 1.1 octal
        ("-7", -7),
        ("0x1F", "0x1F"),
        ("1_000", "1_000"),
        ("12:30:00", "12:30:00"),  # not YAML 1.1 sexagesimal
        ("~", None),
        ("null", None),
        ("'5000.00'", "5000.00"),
    ],
)
def test_yaml_scalars_follow_the_yaml_1_2_core_schema(text: str, value: Any) -> None:
    assert parse_document(f"v: {text}\n".encode(), "application/yaml") == {"v": value}


@pytest.mark.parametrize("text", ["5000.00", "1.5", "1e3", "-2.5E-3", ".5", ".inf", "-.Inf", ".nan"])
def test_yaml_floats_are_rejected_with_a_hint_to_quote(text: str) -> None:
    body = f"""
schema: verdict.policy/v1
rules:
  - id: r
    decision: DENY
    match: {{action.amount: {{gt: {text}}}}}
""".encode()
    path, message = only_problem(body, "application/yaml")
    assert path == "rules[0].match.action.amount.gt"
    assert "float" in message


def test_json_floats_are_rejected_everywhere() -> None:
    document = {
        "schema": "verdict.policy/v1",
        "lists": {"limits": [1, 2.5]},
        "rules": [
            {"id": "r", "decision": "DENY", "match": {"action.x": {"eq": 1.0}, "action.y": {"lt": 3.25}}}
        ],
    }
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(json.dumps(document).encode())
    assert [(p.path, "float" in p.message) for p in caught.value.problems] == [
        ("lists.limits[1]", True),
        ("rules[0].match.action.x.eq", True),
        ("rules[0].match.action.y.lt", True),
    ]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2024-05-01", "YAML date"),
        ("2024-05-01T12:00:00Z", "YAML date"),
    ],
)
def test_yaml_values_that_are_not_json_are_rejected(value: str, fragment: str) -> None:
    body = f"""
schema: verdict.policy/v1
rules:
  - id: r
    decision: DENY
    match: {{action.when: {{eq: {value}}}}}
""".encode()
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(body, "application/yaml")
    problems = caught.value.problems
    assert problems
    assert all(p.path.startswith("rules[0].match.action.when.eq") for p in problems)
    assert any(fragment in p.message for p in problems), problems


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"a: !!binary aGVsbG8=\n", "yaml_tag"),
        (b"a: !!set {x, y}\n", "yaml_tag"),
        (b"a: !!omap [x: 1]\n", "yaml_tag"),
        (b"a: !!str 1\n", "yaml_tag"),
        (b"a: !local x\n", "yaml_tag"),
        (b"? !!merge <<\n: {amount: '1.00'}\namount: '99999.00'\n", "yaml_tag"),
        (b"a: &anchor 1\n", "yaml_alias"),
        (b"a: &b [1]\nc: *b\n", "yaml_alias"),
        (b"a: 1\na: 2\n", "duplicate_key"),
        (b"a: [\n", "invalid_syntax"),
        (b"a: " + b"[" * 100 + b"]" * 100, "nesting_too_deep"),
    ],
)
def test_yaml_tags_anchors_and_duplicates_are_unreadable(body: bytes, kind: str) -> None:
    """Each is a second way of reading the same text; the kind lets the gateway name it."""
    with pytest.raises(DocumentUnreadable) as caught:
        load_policy(body, "application/yaml")
    assert caught.value.kind == kind
    assert [p.path for p in caught.value.problems] == [""]


def test_yaml_non_string_keys_are_rejected() -> None:
    body = b"""
schema: verdict.policy/v1
1: one
rules:
  - id: r
    decision: DENY
    match: {action.x: {eq: {true: 1}}}
"""
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(body, "application/yaml")
    assert [p.path for p in caught.value.problems] == ["", "rules[0].match.action.x.eq"]
    assert all("must be strings" in p.message for p in caught.value.problems)


def test_integers_beyond_the_canonical_range_are_rejected() -> None:
    document = {
        "schema": "verdict.policy/v1",
        "rules": [{"id": "r", "decision": "DENY", "match": {"action.x": {"gt": 2**53, "lt": 2**53 - 1}}}],
    }
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(json.dumps(document).encode())
    assert [p.path for p in caught.value.problems] == ["rules[0].match.action.x.gt"]
    assert "decimal string" in caught.value.problems[0].message


def test_lone_surrogates_are_rejected() -> None:
    rule = b'{"id": "r", "decision": "DENY", "match": {"action.x": {"eq": "\\ud800"}}}'
    body = b'{"schema": "verdict.policy/v1", "rules": [' + rule + b"]}"
    path, message = only_problem(body, "application/json")
    assert path == "rules[0].match.action.x.eq"
    assert "surrogate" in message


def test_policy_invalid_summarizes_the_first_problem() -> None:
    with pytest.raises(PolicyInvalid, match=r"policy is invalid \(2 problems\); first: schema: must be"):
        load_policy(b'{"schema": "v2", "rules": []}')


def test_depth_limit_survives_a_raised_recursion_limit() -> None:
    # Importing eth-account (py_ecc) raises the recursion limit to 100000; C parsers then crash on deep
    # input instead of raising. The pre-check must hold whatever the limit.
    assert sys.getrecursionlimit() >= 1000
    for body in (b"[" * 500_000, b'{"a":' * 200_000):
        _, message = only_problem(body, "application/json")
        assert "nested deeper" in message


def test_nesting_just_within_the_limit_parses_and_brackets_in_strings_do_not_count() -> None:
    nested: Any = []
    for _ in range(63):
        nested = [nested]
    assert parse_document(b"[" * 64 + b"]" * 64) == nested
    tricky = {"s": "[" * 1000, "t": '\\"[[[[', "u": "]"}  # brackets, escaped quotes and backslashes
    assert parse_document(json.dumps(tricky).encode()) == tricky


def test_deep_documents_from_storage_are_reported_not_crashed() -> None:
    deep: Any = "x"
    for _ in range(10_000):
        deep = [deep]
    document = {
        "schema": "verdict.policy/v1",
        "rules": [{"id": "r", "decision": "DENY", "match": {"action.x": {"eq": deep}}}],
    }
    with pytest.raises(PolicyInvalid) as caught:
        compile_document(document)
    assert [p.message for p in caught.value.problems] == ["nested deeper than 64 levels"]


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ("[[1], {}]", 2),
        ('{"a": "[[[[", "b": [{}]}', 3),
        ('{"a": "\\"[[[[", "b": []}', 2),  # an escaped quote does not end the string
        ('["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote after it
        ('"\\\\"[[[', 3),
        ("[" * 65, 65),
    ],
)
def test_json_depth_is_measured_outside_strings(text: str, depth: int) -> None:
    assert _measure_json_depth(text) == depth
