"""RFC 8785 JSON Canonicalization Scheme (JCS) and the hashes built on it.

``rfc8785`` (pure Python) is the reference encoder. It costs ~20 µs for a
ten-key dict and ``canonicalize`` runs several times per request, so values
that provably serialize identically go through ``msgspec`` instead (~0.5 µs).

Why the fast path gives byte-identical output (checked exhaustively and by
property tests in ``tests/unit/crypto/test_canonical.py``):

* Strings. RFC 8785 §3.2.2.2 adopts ECMAScript ``JSON.stringify``: escape
  ``"`` and ``\\``, write ``\\b \\f \\n \\r \\t`` in short form, every other
  C0 control as ``\\u00xx`` with lowercase hex, and everything else (DEL,
  ``/``, U+2028/U+2029, non-ASCII) as raw UTF-8. ``msgspec.json.encode``
  follows exactly these rules for every code point. Lone surrogates make
  ``msgspec`` raise ``UnicodeEncodeError``; we then defer to the reference,
  which rejects them.
* Numbers. Only exact ``int`` with |n| < 2**53 is admitted (RFC 8785 §3.2.2.3:
  integers in the IEEE 754 safe range print as plain decimal in both).
  Floats, ``bool``/``int`` subclasses and big ints take the reference path.
* Member order. RFC 8785 §3.2.3 sorts keys by UTF-16 code units; ``msgspec``
  sorts by code point. The two orders agree unless a key holds a code point in
  U+D800..U+FFFF (above the surrogate block a BMP unit sorts after the
  surrogate pair of a supplementary character, by code point it sorts
  before), so keys with any such character take the reference path.
* Structure. Only exact ``dict``, ``list``, ``str``, ``int``, ``bool`` and
  ``None``, nested at most 64 deep, are admitted; anything else (tuples,
  subclasses, custom types, deeper trees) takes the reference path.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
import rfc8785
from eth_hash.auto import keccak as _eth_hash_keccak

from crypto.errors import CanonicalizationError

try:  # safe-pysha3 (eth-hash's `pysha3` backend): the same Keccak-256 in C, a fifth of the cost per
    # call of eth-hash's default pycryptodome backend (several hashes per proposal)
    from sha3 import keccak_256 as _keccak_256
except ImportError:  # e.g. an auditor's environment without it: eth-hash's backend
    _keccak_256 = None

__all__ = ["action_hash", "canonicalize", "decode_canonical", "keccak256", "sha256"]

# RFC 8785 §3.2.2.3 / I-JSON (RFC 7493 §2.2): integers beyond 2**53 lose precision.
_SAFE_INTEGER_LIMIT = 2**53

# Code points whose UTF-16 order can differ from their code-point order (see module docstring).
_UTF16_ORDER_HAZARD = re.compile("[\ud800-\uffff]")

# msgspec recurses on the C stack; deeper values take the (pure-Python) reference path.
_FAST_PATH_MAX_DEPTH = 64

_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 (JCS) serialization of ``value`` as UTF-8 bytes.

    ``value`` is a tree of ``dict`` (string keys), ``list``/``tuple``, ``str``,
    ``int``, ``float``, ``bool`` and ``None``.

    Raises:
        CanonicalizationError: ``value`` holds an integer with |n| >= 2**53, a
            NaN or infinite float, a non-string key, a lone surrogate, an
            unsupported type, or is nested too deeply or cyclically.
    """
    try:
        if _is_fast_path_exact(value):
            return _encode_sorted(value)
    except (RecursionError, UnicodeEncodeError, msgspec.EncodeError):
        pass  # the reference encoder decides, and raises the precise error
    return _canonicalize_reference(value)


def canonicalize_member(value: Any) -> bytes:
    """`canonicalize` for one member of a larger document: a string (or None, or an integer) is
    written directly, without the tree walk, as the fast path would; anything else is
    `canonicalize(value)`. Raises what `canonicalize` raises."""
    value_type = type(value)
    if value_type is str:
        try:
            return _encode_sorted(value)  # msgspec writes every string as RFC 8785 does
        except UnicodeEncodeError:
            pass  # a lone surrogate: the reference raises the precise error
    elif value is None:
        return b"null"
    elif value_type is int and -_SAFE_INTEGER_LIMIT < value < _SAFE_INTEGER_LIMIT:
        return str(value).encode()
    return canonicalize(value)


def _canonicalize_reference(value: Any) -> bytes:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as error:
        raise CanonicalizationError(str(error)) from error
    except UnicodeEncodeError as error:
        # rfc8785 sorts keys with .encode("utf-16be") and lets this escape for lone surrogates.
        raise CanonicalizationError("object key contains a lone surrogate") from error
    except RecursionError as error:
        raise CanonicalizationError("value is nested too deeply (or contains a cycle)") from error


def _is_fast_path_exact(value: Any) -> bool:
    """Say whether ``msgspec`` provably encodes ``value`` exactly as RFC 8785 does.

    Iterative, with the leaves checked inline: this runs for every audit entry, and a
    function call per node cost more than the encoding itself.
    """
    limit = _SAFE_INTEGER_LIMIT
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        node_type = type(node)
        if node_type is dict:
            for key in node:
                if type(key) is not str or (not key.isascii() and _UTF16_ORDER_HAZARD.search(key)):
                    return False
            items = node.values()
        elif node_type is list:
            items = node
        elif node_type is int:
            if not -limit < node < limit:
                return False
            continue
        elif node_type is str or node is None or node_type is bool:
            continue
        else:
            return False
        if depth == _FAST_PATH_MAX_DEPTH:
            return False
        for item in items:
            item_type = type(item)
            if item_type is str or item is None or item_type is bool:
                continue
            if item_type is int:
                if not -limit < item < limit:
                    return False
            elif item_type is dict or item_type is list:
                push((item, depth + 1))
            else:
                return False
    return True


class _Float:
    """What floats decode to on the fast path of `decode_canonical`: msgspec cannot encode it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_decode_marking_floats = msgspec.json.Decoder(float_hook=_Float).decode
# Bytes of code points whose key order can differ (UTF-8 lead bytes of U+D000..U+FFFF) map to
# "X", digits to "0", the bytes a JSON number can follow (RFC 8259 §2: a structural character,
# whitespace, or the minus sign) to "S", the rest to " ". "X", or "S" then a run of 16 digits
# (room for an integer beyond 2**53), sends the bytes to the exact path. A run of digits inside a
# string (a zero address, a hash) follows a letter or a quote: it is no number and no hazard.
# (bytes.translate and `in` run at memory speed; a regular expression took 18 µs per kilobyte.)
_NUMBER_FOLLOWS = b":[,- \t\n\r"
_HAZARD_MAP = bytes(
    ord("0")
    if chr(b).isdigit() and b < 128
    else ord("X")
    if 0xED <= b <= 0xEF
    else ord("S")
    if b in _NUMBER_FOLLOWS
    else ord(" ")
    for b in range(256)
)
_LONG_DIGIT_RUN = b"0" * 16
_LONG_NUMBER = b"S" + _LONG_DIGIT_RUN


def _fast_decode_hazard(raw: bytes) -> bool:
    mapped = raw.translate(_HAZARD_MAP)
    return (
        _LONG_NUMBER in mapped
        or mapped.startswith(_LONG_DIGIT_RUN)  # a document that is one number
        or (not raw.isascii() and b"X" in mapped)
    )


def decode_canonical(raw: bytes) -> Any:
    """Decode JSON bytes that must be the RFC 8785 form of their value, and return the value.

    The fast path decodes with msgspec and re-encodes: equal bytes prove canonical form when the
    value holds no float, no integer beyond 2**53 and no key whose order UTF-16 decides (the
    module docstring's conditions; floats are decoded to a marker msgspec refuses to encode, the
    other two are screened on the bytes). Anything else is decided by `canonicalize`.

    Raises:
        ValueError: ``raw`` is not JSON (a ``msgspec.DecodeError``, a ``ValueError``).
        CanonicalizationError: it is JSON, but not in RFC 8785 canonical form.
    """
    if not _fast_decode_hazard(raw):
        try:
            value = _decode_marking_floats(raw)
            if _encode_sorted(value) == raw:
                return value
        except (msgspec.EncodeError, TypeError, UnicodeEncodeError, RecursionError):
            pass
        except msgspec.DecodeError as error:
            raise ValueError(str(error)) from None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        raise ValueError(str(error)) from None
    if canonicalize(value) != raw:
        raise CanonicalizationError("JSON is not in RFC 8785 canonical form")
    return value


def sha256(data: bytes) -> bytes:
    """Return the 32-byte SHA-256 digest of ``data`` (FIPS 180-4)."""
    return hashlib.sha256(data).digest()


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's, not FIPS 202 SHA3-256)."""
    if _keccak_256 is not None:
        return _keccak_256(data).digest()
    return _eth_hash_keccak(data)


def action_hash(action: dict[str, Any]) -> bytes:
    """Return ``keccak256(canonicalize(action))``, the 32-byte hash signed as ``actionHash``.

    Raises:
        CanonicalizationError: ``action`` cannot be canonicalized (see :func:`canonicalize`).
    """
    return keccak256(canonicalize(action))
