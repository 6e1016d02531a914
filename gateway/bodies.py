"""Checks every JSON request body before the handlers decode it.

msgspec (like most fast parsers) keeps the last of duplicated keys silently. An executor
whose parser keeps the first would then act on a different amount than the one the policy
judged, so a body with a duplicated key is refused outright. So are NaN/Infinity literals
(not JSON) and bodies that are not JSON at all on JSON routes.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request

from gateway.errors import InvalidRequest, UnsupportedMediaType

JSON = "application/json"
OTHER_BODY_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")  # policies may be YAML


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def check_json_text(body: bytes) -> None:
    """Raises InvalidRequest (`duplicate_key`, `invalid_json`, `nesting_too_deep`) for a body that
    is not plain JSON, repeats a key within one object, or nests deeper than the parser allows."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except _DuplicateKey as exc:
        raise InvalidRequest(
            f"the key {exc.key!r} appears twice in one object; parsers disagree on which one counts",
            code="duplicate_key",
            key=exc.key,
        ) from None
    except RecursionError:
        raise InvalidRequest("the JSON body is nested too deeply", code="nesting_too_deep") from None
    except ValueError as exc:  # includes UnicodeDecodeError (not UTF-8)
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


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
