"""RFC 8785 canonicalization: the msgspec fast path must be byte-identical to rfc8785 (the reference)."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import struct
import sys

import msgspec
import pytest
import rfc8785
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crypto import CanonicalizationError, CryptoError, action_hash, canonicalize, keccak256, sha256
from crypto.canonical import _is_fast_path_exact, canonicalize_member, decode_canonical

# ---- RFC 8785 example vectors


def test_rfc8785_section_3_2_2_example() -> None:
    # RFC 8785 §3.2.2: mixed numbers, escapes and literals.
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    want = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonicalize(value) == want


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (D83D DE00) sorts before U+FB33.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    want = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert canonicalize(value) == want
    assert not _is_fast_path_exact(value)  # msgspec would put U+FB33 before U+1F600
    assert msgspec.json.encode(value, order="sorted") != want


@pytest.mark.parametrize(
    ("ieee754_bits", "want"),
    [
        # RFC 8785 Appendix B: IEEE 754 double -> ECMAScript number serialization.
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_rfc8785_appendix_b_numbers(ieee754_bits: str, want: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(ieee754_bits))
    assert canonicalize(number) == want.encode()
    assert canonicalize([number]) == f"[{want}]".encode()


# ---- The fast path's escaping, proven exhaustively


def test_fast_path_escapes_every_code_point_like_rfc8785() -> None:
    # RFC 8785 §3.2.2.2: escaping is per character, so checking each one on its own covers all strings.
    every_scalar_value = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert msgspec.json.encode(every_scalar_value) == rfc8785.dumps(every_scalar_value)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x00\x01\x0b\x1f", '"\\u0000\\u0001\\u000b\\u001f"'),  # lowercase hex
        ("\x7f/\u2028\u2029", '"\x7f/\u2028\u2029"'),  # DEL, solidus, JS line separators: raw
        ('"\\', '"\\"\\\\"'),
    ],
)
def test_escapes_follow_rfc8785_section_3_2_2_2(text: str, want: str) -> None:
    assert canonicalize(text) == want.encode()
    assert canonicalize({text: text}) == f"{{{want}:{want}}}".encode()


# ---- Property: canonicalize == rfc8785.dumps on random JSON trees

NASTY_CHARACTERS = [
    "\x00", "\x08", "\x1f", "\x7f", "/", "\\", '"', "\u2028", "\u2029", "\ufeff", "\ud7ff", "\ud800",
    "\udbff", "\udc00", "\udfff", "\ue000", "\ufb33", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff",
]  # fmt: skip
characters = st.one_of(st.characters(codec=None), st.sampled_from(NASTY_CHARACTERS))
texts = st.text(characters, max_size=8)
keys = st.one_of(st.text(characters, max_size=4), st.sampled_from(["a", "b", "é", "€", "\ufb33", "😀"]))
integers = st.one_of(
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 2**64, -(2**64)]),
)
scalars = st.one_of(st.none(), st.booleans(), integers, texts, st.floats(allow_nan=True, allow_infinity=True))
json_trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(json_trees)
def test_canonicalize_matches_rfc8785(value: object) -> None:
    event("fast path" if _is_fast_path_exact(value) else "reference path")
    try:
        want = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(CanonicalizationError):
            canonicalize(value)
    else:
        assert canonicalize(value) == want


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(json_trees)
def test_canonicalize_member_is_canonicalize(value: object) -> None:
    """The shortcut for scalars (audit entries' fields) writes and refuses exactly what the whole does."""
    try:
        want = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(CanonicalizationError):
            canonicalize_member(value)
    else:
        assert canonicalize_member(value) == want


fast_path_trees = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), texts),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=1000)
@given(fast_path_trees)
def test_msgspec_agrees_whenever_fast_path_is_claimed(value: object) -> None:
    if _is_fast_path_exact(value):
        try:
            encoded = msgspec.json.encode(value, order="sorted")
        except UnicodeEncodeError:
            with pytest.raises(rfc8785.CanonicalizationError):
                rfc8785.dumps(value)  # lone surrogate in a value: both refuse
        else:
            assert encoded == rfc8785.dumps(value)


def test_typical_action_takes_fast_path() -> None:
    action = {"tool": "http.post", "url": "https://api.example.com/v1/pay", "amount": 1250, "ok": True}
    assert _is_fast_path_exact(action)
    assert canonicalize(action) == rfc8785.dumps(action)


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [(1, 2), [1.5], {"k": 2.0}, True, Color.RED, {"k": [Color.RED]}, {"\ue000": 1, "\U0001f600": 2}],
    ids=["tuple", "float", "float-in-dict", "bool", "int-enum", "nested-int-enum", "hazard-keys"],
)
def test_values_outside_fast_path_use_reference(value: object) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


# ---- Errors


@pytest.fixture
def default_recursion_limit():
    previous = sys.getrecursionlimit()  # Hypothesis raises it (to 100000) and leaves it raised
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(previous)


cycle: list[object] = []
cycle.append(cycle)


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        2**53,
        -(2**53),
        {"k": 2**64},
        {1: "non-string key"},
        "lone \ud800 surrogate",
        {"lone \udfff surrogate key": 1},
        b"bytes",
        {"k": object()},
        cycle,
    ],
    ids=[
        "nan",
        "inf",
        "2**53",
        "-2**53",
        "2**64",
        "int-key",
        "surrogate",
        "surrogate-key",
        "bytes",
        "object",
        "cycle",
    ],
)
def test_uncanonicalizable_values_raise(value: object, default_recursion_limit: None) -> None:
    with pytest.raises(CanonicalizationError) as raised:
        canonicalize(value)
    assert isinstance(raised.value, CryptoError)


def nested_lists(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [64, 65, 500])
def test_deep_values_beyond_fast_path_use_reference(depth: int) -> None:
    value = {"k": nested_lists(depth - 1)}
    assert _is_fast_path_exact(value) == (depth <= 64)
    assert canonicalize(value) == b'{"k":' + b"[" * (depth - 1) + b"0" + b"]" * (depth - 1) + b"}"


def test_nesting_beyond_the_recursion_limit_raises_canonicalization_error(
    default_recursion_limit: None,
) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(nested_lists(5_000))


# ---- Hashes


def test_hash_known_answers() -> None:
    assert sha256(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert (
        keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )  # not SHA3-256
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()


@given(st.binary(max_size=600))
def test_keccak256_is_eth_hash_pycryptodome_keccak(data: bytes) -> None:
    # the C backend (safe-pysha3) against eth-hash's default one, across the 136-byte rate
    from eth_hash.backends.pycryptodome import CryptodomeBackend

    assert keccak256(data) == CryptodomeBackend().keccak256(data)


def test_keccak256_falls_back_to_eth_hash_without_pysha3(monkeypatch: pytest.MonkeyPatch) -> None:
    import crypto.canonical

    monkeypatch.setattr(crypto.canonical, "_keccak_256", None)
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_action_hash_is_keccak_of_canonical_bytes_and_ignores_key_order() -> None:
    first = {"b": [1, {"y": None, "x": "é"}], "a": True}
    second = {"a": True, "b": [1, {"x": "é", "y": None}]}
    assert (
        action_hash(first)
        == action_hash(second)
        == keccak256(b'{"a":true,"b":[1,{"x":"\xc3\xa9","y":null}]}')
    )
    assert len(action_hash(first)) == 32
    with pytest.raises(CanonicalizationError):
        action_hash({"amount": math.nan})


def _serializations(value: object) -> list[bytes]:
    """The same value written by several serializers: canonical, and the usual near misses."""
    out = []
    for kwargs in (
        {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False},
        {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": True},
        {"sort_keys": False, "separators": (", ", ": "), "ensure_ascii": False},
    ):
        try:
            out.append(json.dumps(value, **kwargs).encode("utf-8", "surrogatepass"))
        except (ValueError, TypeError):
            pass
    try:
        out.append(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        pass
    return out


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(json_trees)
def test_decode_canonical_accepts_exactly_the_rfc8785_bytes(value: object) -> None:
    for raw in _serializations(value):
        try:
            decoded = json.loads(raw)
            expected = rfc8785.dumps(decoded)
        except (ValueError, rfc8785.CanonicalizationError, UnicodeEncodeError):
            with pytest.raises((ValueError, CanonicalizationError)):
                decode_canonical(raw)
            continue
        if raw == expected:
            assert rfc8785.dumps(decode_canonical(raw)) == raw
        else:
            with pytest.raises((CanonicalizationError, ValueError)):
                decode_canonical(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1.5}',  # a float: msgspec and RFC 8785 may print it differently
        b'{"a":9007199254740993}',  # beyond 2**53
        b'{"a":-9007199254740993}',
        b'{"a":[1,9007199254740993]}',
        b'{"a": 9007199254740993}',
        b"9007199254740993",  # a document that is one number
        b'{"a":"0x0000000000000000000000000000000000000000"}',  # digits in a string: no number
        b'{"a":"x,90071992547409930"}',
        b'{"\xef\xac\xb3":1,"\xf0\x9f\x98\x80":2}',  # U+FB33 sorts after U+1F600 in UTF-16
        b'{"a":"\\u0041"}',  # an escape RFC 8785 does not use
        b'{"a":1,"a":2}',  # a duplicate key
        b'{"b":1,"a":2}',  # unsorted
        b'{"a": 1}',  # whitespace
    ],
)
def test_decode_canonical_edge_cases_agree_with_rfc8785(raw: bytes) -> None:
    try:
        canonical = rfc8785.dumps(json.loads(raw)) == raw
    except rfc8785.CanonicalizationError:
        canonical = False
    if canonical:
        assert decode_canonical(raw) == json.loads(raw)
    else:
        with pytest.raises(CanonicalizationError):
            decode_canonical(raw)
