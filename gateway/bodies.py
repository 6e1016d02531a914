"""Checks every JSON request body before the handlers decode it.

msgspec (like most fast parsers) keeps the last of duplicated keys silently. An executor
whose parser keeps the first would then act on a different amount than the one the policy
judged, so a body with a duplicated key is refused outright. So are NaN/Infinity literals
(not JSON), bodies that are not UTF-8 or not JSON at all on JSON routes, keys and strings past
sane lengths, and money sent as a JSON number.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request

from gateway.errors import AppError, InvalidRequest, Unprocessable, UnsupportedMediaType

JSON = "application/json"
OTHER_BODY_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")  # policies may be YAML


MAX_KEY_CHARS = 256  # an object's key
MAX_STRING_CHARS = 8192  # any string value (a whole body is at most 64 KiB anyway)
# Money travels as decimal strings (DESIGN invariant 5): a JSON number under `amount` or `*_amount`
# is refused in any body. A float is refused anywhere in an action (`float_not_allowed`); an integer
# is exact in Python, but not in every executor's parser (JavaScript loses digits past 2^53).
MONEY_KEY = "amount"
MONEY_KEY_SUFFIX = "_amount"


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


def _check_list(items: list[Any]) -> None:
    # Objects inside the list were checked by their own hook call; strings and lists were not.
    for item in items:
        kind = type(item)
        if kind is str:
            if len(item) > MAX_STRING_CHARS:
                raise _string_too_long("a string in an array")
        elif kind is list:
            _check_list(item)


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
        if len(key) > MAX_KEY_CHARS:
            raise _Refused(
                InvalidRequest(
                    f"a key is longer than {MAX_KEY_CHARS} characters",
                    code="key_too_long",
                    limit=MAX_KEY_CHARS,
                )
            )
        kind = type(value)
        if kind is str:
            if len(value) > MAX_STRING_CHARS:
                raise _string_too_long(f"the value of {key!r}")
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
    return result


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def check_json_text(body: bytes) -> None:
    """Raises InvalidRequest for a body that is not UTF-8 (`invalid_utf8`), not plain JSON
    (`invalid_json`), repeats a key within one object (`duplicate_key`), nests deeper than the
    parser allows (`nesting_too_deep`), or has a key or string over the limits (`key_too_long`,
    `string_too_long`); Unprocessable (`amount_not_string`) for money sent as a JSON number."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"the body is not UTF-8 (byte {exc.start}); JSON is sent as UTF-8 (RFC 8259 §8.1)",
            code="invalid_utf8",
        ) from None
    try:
        json.loads(text, object_pairs_hook=_check_object, parse_constant=_refuse_constant)
    except _Refused as exc:
        raise exc.error from None
    except RecursionError:
        raise InvalidRequest("the JSON body is nested too deeply", code="nesting_too_deep") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if len(text) > MAX_STRING_CHARS and text.lstrip().startswith("["):
        # a top-level array's own strings reach no hook
        _check_list(json.loads(text))


async def check_request_body(request: Request) -> None:
    """Litestar `before_request` hook. Raises UnsupportedMediaType or InvalidRequest."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    body = await request.body()
    if not body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in OTHER_BODY_TYPES:
        return  # the route that accepts these validates them itself
    if media_type != JSON and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as {JSON}, not {media_type or 'no content type'}")
    check_json_text(body)
