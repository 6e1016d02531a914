"""Bodies built to crash a parser get a problem answer, and the gateway stays up."""

from __future__ import annotations

import typing

import msgspec
import pytest
from litestar.handlers import HTTPRouteHandler

from gateway import schemas
from gateway.bodies import MAX_KEY_CHARS, MAX_STRING_CHARS
from gateway.routes import ROUTES
from tests.integration.helpers import bearer, make_world, pay, read_log


async def test_deeply_nested_body_is_refused_not_fatal(client):
    # py_ecc (via eth-account) raises Python's recursion limit to 100000 at import; with that
    # limit, decoding ~50k nested arrays overflowed the C stack and killed the process.
    world = await make_world(client)
    depth = 30_000
    body = b'{"action": {"type": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}}"
    r = await client.post(
        f"/v1/agents/{world.agent}/propose",
        content=body,
        headers={**bearer(world.agent_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "nesting_too_deep")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    assert r.status_code == 201


async def test_body_over_the_limit_is_413(client):
    world = await make_world(client)
    body = pay(note="x" * 70_000)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=bearer(world.agent_token))
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")


async def test_duplicate_keys_are_refused_and_nothing_is_created(client):
    world = await make_world(client)
    entries_before = (
        await client.get(f"/v1/tenants/{world.tenant}/audit/entries", headers=bearer(world.auditor))
    ).json()["size"]
    headers = {**bearer(world.agent_token), "Content-Type": "application/json"}
    bodies = [
        b'{"action": {"type": "pay_invoice", "amount": "10.00", "amount": "99999.00", "vendor": "x"}}',
        b'{"action": {"type": "pay_invoice", "amount": "10.00"}, "action": {"type": "x"}}',
        b'{"action": {"type": "x", "lines": [{"sku": 1, "sku": 2}]}}',
    ]
    for body in bodies:
        r = await client.post(f"/v1/agents/{world.agent}/propose", content=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, "duplicate_key"), r.text
    r = await client.post(
        "/v1/tenants",
        content=b'{"id": "a", "id": "b", "name": "x"}',
        headers={**bearer(world.admin_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "duplicate_key")
    size = (
        await client.get(f"/v1/tenants/{world.tenant}/audit/entries", headers=bearer(world.auditor))
    ).json()["size"]
    assert size == entries_before


async def test_non_json_bodies(client):
    world = await make_world(client)
    url = f"/v1/agents/{world.agent}/propose"
    r = await client.post(
        url,
        content=b'{"action": {"type": "x"}}',
        headers={**bearer(world.agent_token), "Content-Type": "text/plain"},
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    for body in (b'{"action": {"type": "x", "n": NaN}}', b"{nope", b'\xef\xbb\xbf{"action": {"type": "x"}}'):
        r = await client.post(
            url, content=body, headers={**bearer(world.agent_token), "Content-Type": "application/json"}
        )
        assert (r.status_code, r.json()["code"]) == (400, "invalid_json"), body
    r = await client.post(
        url,
        json=pay(),
        headers={**bearer(world.agent_token), "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201


async def test_bodies_that_are_not_utf8_are_refused(client):
    world = await make_world(client)
    headers = {**bearer(world.agent_token), "Content-Type": "application/json"}
    bodies = [
        b'{"action": {"type": "x", "s": "\xff"}}',  # a lone byte that starts nothing
        b'{"action": {"type": "x", "s": "\xc3"}}',  # a truncated two-byte sequence
        b'{"action": {"type": "x", "s": "\xed\xa0\x80"}}',  # an encoded surrogate
        '{"action": {"type": "x"}}'.encode("utf-16"),  # JSON, but UTF-16 (json.loads would take it)
        '{"action": {"type": "x", "s": "é"}}'.encode("latin-1"),
    ]
    for body in bodies:
        r = await client.post(f"/v1/agents/{world.agent}/propose", content=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_utf8"), body
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(note="ünïcødé ✓"), headers=headers)
    assert r.status_code == 201


async def test_keys_and_strings_over_the_limits_are_refused(client):
    world = await make_world(client)
    size_before = len(await read_log(client, world))
    url = f"/v1/agents/{world.agent}/propose"
    long = "x" * (MAX_STRING_CHARS + 1)
    cases = [
        (pay(note=long), "string_too_long"),
        (pay(lines=[["a", long]]), "string_too_long"),  # inside nested arrays
        ({**pay(), "rationale": long}, "string_too_long"),
        ({"action": {"type": "x", "k" * (MAX_KEY_CHARS + 1): "v"}}, "key_too_long"),
        ({"action": {"type": "x"}, "metadata": {"k" * (MAX_KEY_CHARS + 1): 1}}, "key_too_long"),
    ]
    for body, code in cases:
        r = await client.post(url, json=body, headers=bearer(world.agent_token))
        assert (r.status_code, r.json()["code"]) == (400, code), r.text
    r = await client.post("/v1/tenants", json={"id": "t", "name": long}, headers=bearer(world.admin_token))
    assert (r.status_code, r.json()["code"]) == (400, "string_too_long")
    # at the limits exactly: accepted
    at_limit = pay(note="x" * MAX_STRING_CHARS, **{"k" * MAX_KEY_CHARS: "v"})
    assert (await client.post(url, json=at_limit, headers=bearer(world.agent_token))).status_code == 201
    assert len(await read_log(client, world)) == size_before + 2  # the accepted proposal only


@pytest.mark.parametrize("field", ["amount", "fee_amount"])
async def test_amounts_sent_as_json_numbers_are_refused(client, field):
    world = await make_world(client)
    size_before = len(await read_log(client, world))
    url = f"/v1/agents/{world.agent}/propose"
    for amount in (1200, 9007199254740993, -1, 0):
        body = {"action": {"type": "pay_invoice", "vendor": "acme-supplies", field: amount}}
        r = await client.post(url, json=body, headers=bearer(world.agent_token))
        assert (r.status_code, r.json()["code"]) == (422, "amount_not_string"), r.text
        assert r.json()["field"] == field
    nested = pay(lines=[{"sku": "a", field: 5}])
    r = await client.post(url, json=nested, headers=bearer(world.agent_token))
    assert (r.status_code, r.json()["code"]) == (422, "amount_not_string")
    assert len(await read_log(client, world)) == size_before
    # other integers are fine; so is the amount as a string
    r = await client.post(url, json=pay(quantity=3, **{field: "12.50"}), headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text


def _body_type(handler) -> type | None:
    hints = typing.get_type_hints(handler.fn, include_extras=True)
    data = hints.get("data")
    if data is None:
        return None
    while typing.get_origin(data) is typing.Annotated:
        data = typing.get_args(data)[0]
    members = [t for t in typing.get_args(data) if t is not type(None)] or [data]
    assert len(members) == 1, handler
    return members[0]


def test_every_request_body_type_refuses_unknown_fields():
    handlers = [
        h for r in ROUTES for h in (vars(r).values() if isinstance(r, type) else [r])
    ]  # Controllers too
    body_types = {h.handler_name: _body_type(h) for h in handlers if isinstance(h, HTTPRouteHandler)}
    body_types = {path: t for path, t in body_types.items() if t is not None}
    assert len(body_types) >= 6
    for path, body_type in body_types.items():
        assert issubclass(body_type, schemas.Request), path
        assert body_type.__struct_config__.forbid_unknown_fields, path
        with pytest.raises(msgspec.ValidationError, match="unknown field"):
            msgspec.convert({"surprise": 1}, body_type)


async def test_unknown_top_level_fields_are_refused_on_every_body_route(client):
    world = await make_world(client)
    admin = bearer(world.tenant_admin)
    calls = [
        ("/v1/tenants", {"id": "t2", "name": "T", "owner": "me"}, bearer(world.admin_token)),
        (f"/v1/tenants/{world.tenant}/api-keys", {"role": "auditor", "scopes": ["all"]}, admin),
        (f"/v1/tenants/{world.tenant}/agents", {"id": "b2", "admin": True}, admin),
        (f"/v1/tenants/{world.tenant}/agents/{world.agent}/token", {"ttl": 5}, admin),
        (
            f"/v1/tenants/{world.tenant}/approvers",
            {"address": "0x" + "11" * 20, "roles": ["cfo"], "weight": 2},
            admin,
        ),
        (f"/v1/agents/{world.agent}/propose", {**pay(), "decision": "ALLOW"}, bearer(world.agent_token)),
    ]
    for url, body, headers in calls:
        r = await client.post(url, json=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, "unknown_field"), (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    # a policy document is checked by the policy model, which refuses unknown fields too
    r = await client.post(
        f"/v1/tenants/{world.tenant}/policies",
        json={"schema": "verdict.policy/v1", "rules": [], "surprise": 1},
        headers=admin,
    )
    assert r.status_code in (400, 422) and r.json()["code"], r.text
