"""Request intake: checks every request's path, query and body before anything decides on it.

One reading of a request (DESIGN invariant 9). msgspec (like most fast parsers) keeps the last
of duplicated keys silently; an executor whose parser keeps the first would then act on a
different amount than the one the policy judged, so a body with a duplicated key is refused
outright. So are NaN/Infinity (not JSON), bodies that are not UTF-8, keys and strings past sane
lengths, NUL characters anywhere (PostgreSQL cannot store them in text), and money sent as a JSON
number.

Content types: every route takes `application/json` (or `+json`) and nothing else (415
`unsupported_media_type`), whether or not it reads a body, except the routes marked
`opt={ACCEPTS_YAML: True}` (the policy routes), which also take YAML. YAML is read by the same
restricted loader the policy package publishes with (`policy.load.parse_document`: no tags,
anchors, aliases or duplicate keys), and what it reads passes the same checks as JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from litestar import Request
from litestar.exceptions import InternalServerException

from gateway.errors import AppError, InvalidRequest, NotFound, Unprocessable, UnsupportedMediaType
from policy import DocumentUnreadable
from policy.load import YAML_MEDIA_TYPES, parse_document

JSON = "application/json"
ACCEPTS_YAML = "verdict_accepts_yaml"  # handler opt: the route reads YAML bodies too
BODY_METHODS = ("POST", "PUT", "PATCH")

MAX_KEY_CHARS = 256  # an object's key
MAX_STRING_CHARS = 8192  # any string value (a whole body is at most 64 KiB anyway)
# Path integers are looked up in BIGINT columns: beyond them, nothing can exist (404), and the
# database must not be asked (asyncpg refuses to encode them, a 500).
MIN_PATH_INT, MAX_PATH_INT = -(2**63), 2**63 - 1
# Money travels as decimal strings (DESIGN invariant 5): a JSON number under `amount` or `*_amount`
# is refused in any body. A float is refused anywhere in an action (`float_not_allowed`); an integer
# is exact in Python, but not in every executor's parser (JavaScript loses digits past 2^53).
MONEY_KEY = "amount"
MONEY_KEY_SUFFIX = "_amount"
NUL = "\x00"

# DocumentUnreadable.kind -> the code JSON bodies are refused with for the same fault
_YAML_CODES = {
    "duplicate_key": "duplicate_key",
    "nesting_too_deep": "nesting_too_deep",
    "invalid_utf8": "invalid_utf8",
    "invalid_number": "invalid_number",
    "yaml_alias": "yaml_alias_not_allowed",
    "yaml_tag": "yaml_tag_not_allowed",
}


class _Refused(ValueError):
    """A body the hook below refuses; carries the problem to answer with."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.detail)
        self.error = error


def _string_too_long(where: str) -> _Refused:
    return _Refused(
        InvalidRequest(
            f"{where} is longer than {MAX_STRING_CHARS} characters",
            code="string_too_long",
            limit=MAX_STRING_CHARS,
        )
    )


def nul_character(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"{where} holds a NUL character (\\u0000), which no text field may hold", code="nul_character"
    )


def _check_string(value: str, where: str) -> None:
    if len(value) > MAX_STRING_CHARS:
        raise _string_too_long(where)
    if NUL in value:
        raise _Refused(nul_character(where))


def _check_list(items: list[Any]) -> None:
    # Objects inside the list were checked by their own hook call; strings and lists were not.
    for item in items:
        kind = type(item)
        if kind is str:
            _check_string(item, "a string in an array")
        elif kind is list:
            _check_list(item)
        elif kind is float and not math.isfinite(item):
            raise _Refused(_not_a_number("an array element"))


def _check_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook`: one pass over each object's members (keeps the hot path cheap)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(
                    InvalidRequest(
                        f"the key {key!r} appears twice in one object; parsers disagree on which one counts",
                        code="duplicate_key",
                        key=key,
                    )
                )
            seen.add(key)
    for key, value in pairs:
        if len(key) > MAX_KEY_CHARS or NUL in key:  # one test on the hot path, then say which
            if NUL in key:
                raise _Refused(nul_character("a key"))
            raise _Refused(
                InvalidRequest(
                    f"a key is longer than {MAX_KEY_CHARS} characters",
                    code="key_too_long",
                    limit=MAX_KEY_CHARS,
                )
            )
        kind = type(value)
        if kind is str:
            if len(value) > MAX_STRING_CHARS or NUL in value:
                _check_string(value, f"the value of {key!r}")
        elif kind is int and (key == MONEY_KEY or key.endswith(MONEY_KEY_SUFFIX)):
            raise _Refused(
                Unprocessable(
                    f'{key!r} is a JSON number; send amounts as decimal strings like "7800.00"',
                    code="amount_not_string",
                    field=key,
                )
            )
        elif kind is list:
            _check_list(value)
        elif kind is float and not math.isfinite(value):
            raise _Refused(_not_a_number(key))
    return result


def _not_a_number(key: str) -> InvalidRequest:
    return InvalidRequest(
        f"the value of {key!r} is not a finite number (NaN, Infinity, or beyond a double)",
        code="invalid_number",
        field=key,
    )


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_value(value: Any) -> None:
    """The checks `_check_object` makes while JSON is parsed, over a tree already decoded
    (a YAML body, a top-level array or string). Raises _Refused."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    raise _Refused(
                        InvalidRequest("every key must be a string, as in JSON", code="invalid_yaml")
                    )
            _check_object(list(item.items()))
            stack.extend(v for v in item.values() if type(v) in (dict, list))
        elif kind is list:
            for element in item:
                if type(element) is str:
                    _check_string(element, "a string in an array")
                elif type(element) is float and not math.isfinite(element):
                    raise _Refused(_not_a_number("an array element"))
                elif type(element) in (dict, list):
                    stack.append(element)
        elif kind is str:
            _check_string(item, "the body")
        elif kind is float and not math.isfinite(item):
            raise _Refused(_not_a_number("the body"))


# one decoder, as json.loads would build per call with these hooks
_decode_checked = json.JSONDecoder(object_pairs_hook=_check_object, parse_constant=_refuse_constant).decode


def check_json_text(body: bytes) -> None:
    """Raises InvalidRequest for a body that is not UTF-8 (`invalid_utf8`), not plain JSON
    (`invalid_json`), repeats a key within one object (`duplicate_key`), nests deeper than the
    parser allows (`nesting_too_deep`), has a key or string over the limits (`key_too_long`,
    `string_too_long`), a NUL character anywhere (`nul_character`) or a number beyond a double
    (`invalid_number`); Unprocessable (`amount_not_string`) for money sent as a JSON number."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"the body is not UTF-8 (byte {exc.start}); JSON is sent as UTF-8 (RFC 8259 §8.1)",
            code="invalid_utf8",
        ) from None
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _decode_checked(text)
        if type(value) is not dict:  # a top-level array's or string's own values reach no hook
            _check_value(value)
    except _Refused as exc:
        raise exc.error from None
    except RecursionError:
        raise InvalidRequest("the JSON body is nested too deeply", code="nesting_too_deep") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def check_yaml_text(body: bytes) -> None:
    """The checks of `check_json_text` for a YAML body, read by the policy package's loader.
    Raises InvalidRequest (`invalid_yaml`, `duplicate_key`, `nesting_too_deep`, `invalid_utf8`,
    `yaml_alias_not_allowed`, `yaml_tag_not_allowed`, `key_too_long`, `string_too_long`,
    `nul_character`, `invalid_number`) or Unprocessable (`amount_not_string`)."""
    try:
        value = parse_document(body, YAML_MEDIA_TYPES[0])
    except DocumentUnreadable as exc:
        raise InvalidRequest(
            exc.problems[0].message, code=_YAML_CODES.get(exc.kind, "invalid_yaml")
        ) from None
    try:
        _check_value(value)
    except _Refused as exc:
        raise exc.error from None


def check_path_and_query(request: Request) -> None:
    """Path and query values reach the database: refuse a NUL in any of them (InvalidRequest
    `nul_character`), and answer NotFound for a path integer beyond 64 bits (no row can have it)."""
    for name, value in request.path_params.items():
        if type(value) is int and not MIN_PATH_INT <= value <= MAX_PATH_INT:
            raise NotFound(f"no {name} {value}: beyond 64 bits", code="not_found", parameter=name)
        if type(value) is str and NUL in value:
            raise nul_character(f"the path parameter {name}")
    query = request.scope.get("query_string", b"")
    if query and (b"%00" in query or b"\x00" in query):
        raise nul_character("the query string")


def _has_body(request: Request) -> bool:
    headers = request.headers
    length = headers.get("content-length")
    return (length is not None and length.strip() != "0") or "transfer-encoding" in headers


async def check_request_body(request: Request) -> None:
    """Litestar `before_request` hook: reads the body (if any) and checks it. Raises
    UnsupportedMediaType, InvalidRequest (`incomplete_body`, and see `check_json_text`,
    `check_yaml_text`) or Unprocessable."""
    if request.method not in BODY_METHODS and not _has_body(request):
        return
    try:
        body = await request.body()  # the one read: handlers get this copy (Litestar caches it)
    except InternalServerException:
        # Granian hands the app `http.disconnect` when the body's framing is broken (a chunk size
        # such as `zz`) as when the client goes away mid-body; Litestar's reader calls that a
        # server error. It is the client's: 400, whoever is left to read it.
        raise InvalidRequest(
            "the body ended before it was complete: malformed chunked encoding, or a body shorter"
            " than its Content-Length",
            code="incomplete_body",
        ) from None
    if not body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == JSON or media_type.endswith("+json"):
        check_json_text(body)
    elif media_type in YAML_MEDIA_TYPES and request.route_handler.opt.get(ACCEPTS_YAML):
        check_yaml_text(body)
    else:
        accepted = f"{JSON} or application/yaml" if request.route_handler.opt.get(ACCEPTS_YAML) else JSON
        raise UnsupportedMediaType(f"send the body as {accepted}, not {media_type or 'no content type'}")
