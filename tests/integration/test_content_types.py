"""Every route of the OpenAPI schema, called with each body type that is not JSON (issue 11, item 1).

Only the policy routes (publish, simulate) read YAML; everywhere else a YAML body, like any other
non-JSON body, is answered 415 `unsupported_media_type` before anything decides on it, and nothing
is written. On the policy routes a YAML body passes the same checks as JSON (duplicate keys first).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.authz import ACCESS
from tests.integration.audit_count import AuditCount
from tests.integration.helpers import EXAMPLE_POLICY, bearer, make_world, pay

# The body an attacker used: JSON text, valid YAML, a duplicated amount.
DUPLICATE_AMOUNT = (
    b'{"action":{"type":"pay_invoice","amount":"99999.00","amount":"1.00","asset":"USDC","vendor":"x"}}'
)
YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml")
OTHER_TYPES = {
    "text/plain": b'{"action": {"type": "pay_invoice"}}',
    "application/x-www-form-urlencoded": b"action=pay_invoice&amount=1.00",
    "multipart/form-data; boundary=xyz": (
        b'--xyz\r\nContent-Disposition: form-data; name="action"\r\n\r\npay_invoice\r\n--xyz--\r\n'
    ),
    None: b'{"action": {"type": "pay_invoice"}}',  # no Content-Type at all
}
POLICY_ROUTES = {
    ("POST", "/v1/tenants/{tenant_id}/policies"),
    ("POST", "/v1/tenants/{tenant_id}/policies/simulate"),
}
REQUIRED_QUERY = {"index": "0", "size": "1", "from": "0", "to": "1", "role": "cfo"}
TOKEN_PREFERENCE = ("tenant_admin", "agent", "auditor", "admin")


@pytest.fixture
async def open_client(backend) -> AsyncIterator:
    """A client whose public routes are not rate limited per address within this test."""
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    app = create_app(backend.settings(public_burst=100_000, public_rate_per_second=100_000.0))
    async with AsyncTestClient(app=app) as test_client:
        test_client.app_state = app.state
        yield test_client


@pytest.fixture
async def audit_size(backend, client) -> AsyncIterator[AuditCount]:
    count = AuditCount(backend)
    await count.db.open()
    try:
        yield count
    finally:
        await count.db.close()


@pytest.fixture
async def open_audit_size(backend, open_client) -> AsyncIterator[AuditCount]:
    count = AuditCount(backend)
    await count.db.open()
    try:
        yield count
    finally:
        await count.db.close()


async def _fixtures(client: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Path values naming real objects, and a token per role."""
    world = await make_world(client)
    tokens = {
        "admin": world.admin_token,
        "tenant_admin": world.tenant_admin,
        "auditor": world.auditor,
        "agent": world.agent_token,
    }
    r = await client.post(
        "/v1/tenants/acme/approvers",
        json={"address": "0x" + "ab" * 20, "name": "CFO", "roles": ["cfo"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    address = r.json()["address"]
    r = await client.post("/v1/agents/ap-bot/propose", json=pay("9000.00"), headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text
    action_id = r.json()["action_id"]
    r = await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.tenant_admin))
    key_id = r.json()[0]["id"]
    values = {
        "tenant_id": "acme",
        "agent_id": "ap-bot",
        "key_id": key_id,
        "address": address,
        "version": "1",
        "action_id": action_id,
        # the body is refused before any of these is looked up: they need not exist
        "execution_id": "exe_0000000000000000000000000n",
        "name": "bank_api",
        "webhook_id": "wh_nope",
        "tile_path": "0/000.p/1",
    }
    return values, tokens


def _routes(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    routes = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                routes.append((method.upper(), path, operation))
    return routes


def _request_for(
    method: str, path: str, operation: dict[str, Any], values: dict[str, str], tokens: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, str]]:
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    query = {
        p["name"]: REQUIRED_QUERY[p["name"]]
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    roles = ACCESS[(method, path)].roles
    role = next((r for r in TOKEN_PREFERENCE if r in roles), "admin")
    return url, query, bearer(tokens[role])


async def test_every_route_refuses_bodies_that_are_not_json_and_changes_nothing(open_client, open_audit_size):
    client = open_client
    values, tokens = await _fixtures(client)
    routes = _routes(client.app.openapi_schema.to_schema())
    assert len(routes) >= 40 and all((m, p) in ACCESS for m, p, _ in routes)
    seen_policy_routes = set()
    for method, path, operation in routes:
        url, query, auth = _request_for(method, path, operation, values, tokens)
        is_policy_route = (method, path) in POLICY_ROUTES
        attempts: list[tuple[str | None, bytes, tuple[int, str]]] = []
        for media_type in YAML_TYPES:
            refused = (400, "duplicate_key") if is_policy_route else (415, "unsupported_media_type")
            attempts.append((media_type, DUPLICATE_AMOUNT, refused))
            attempts.append((media_type, b"schema: [", (400, "invalid_yaml") if is_policy_route else refused))
        for media_type, body in OTHER_TYPES.items():
            attempts.append((media_type, body, (415, "unsupported_media_type")))
        for media_type, body, (status, code) in attempts:
            headers = {**auth, **({"Content-Type": media_type} if media_type else {})}
            before = await open_audit_size()
            r = await client.request(method, url, params=query, content=body, headers=headers)
            where = f"{method} {path} with {media_type}: {r.status_code} {r.text[:300]}"
            assert r.headers["content-type"] == "application/problem+json", where
            assert (r.status_code, r.json()["code"]) == (status, code), where
            assert await open_audit_size() == before, where
        if is_policy_route:
            seen_policy_routes.add((method, path))
            for media_type in YAML_TYPES:  # the one 2xx: a valid policy as YAML
                headers = {**auth, "Content-Type": media_type}
                r = await client.request(
                    method, url, params=query, content=EXAMPLE_POLICY.encode(), headers=headers
                )
                assert r.status_code in (200, 201), f"{method} {path} with {media_type}: {r.text[:300]}"
    assert seen_policy_routes == POLICY_ROUTES


async def test_yaml_proposal_with_a_duplicated_amount_gets_no_verdict(client, audit_size):
    """The bypass of issue 11: as YAML, the body was never checked and got 201 ALLOW for 1.00."""
    world = await make_world(client)
    before = await audit_size()
    for media_type in YAML_TYPES:
        r = await client.post(
            "/v1/agents/ap-bot/propose",
            content=DUPLICATE_AMOUNT,
            headers={**bearer(world.agent_token), "Content-Type": media_type},
        )
        assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type"), r.text
    r = await client.post(
        "/v1/agents/ap-bot/propose",
        content=DUPLICATE_AMOUNT,
        headers={**bearer(world.agent_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "duplicate_key"), r.text
    assert await audit_size() == before


@pytest.mark.parametrize("media_type", YAML_TYPES)
async def test_yaml_with_duplicate_keys_is_refused_on_rate_limits_and_tenants(client, audit_size, media_type):
    world = await make_world(client)
    before = await audit_size()
    r = await client.put(
        "/v1/tenants/acme/rate-limits",
        content=b'{"propose_per_minute": 1000000, "propose_per_minute": 1}',
        headers={**bearer(world.tenant_admin), "Content-Type": media_type},
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type"), r.text
    r = await client.post(
        "/v1/tenants",
        content=b'{"id": "evil", "name": "A", "name": "B"}',
        headers={**bearer(world.admin_token), "Content-Type": media_type},
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type"), r.text
    r = await client.get("/v1/tenants/evil", headers=bearer(world.admin_token))
    assert r.status_code == 404
    assert await audit_size() == before


LONG = "k" * 300
# (JSON text, YAML text, status, code): the same fault in either syntax gets the same answer.
SAME_FAULT = [
    ('{"schema": "a", "schema": "b"}', "schema: a\nschema: b\n", 400, "duplicate_key"),
    (f'{{"{LONG}": 1}}', f"{LONG}: 1\n", 400, "key_too_long"),
    ('{"a": "' + "x" * 9000 + '"}', "a: " + "x" * 9000 + "\n", 400, "string_too_long"),
    ('{"a": "x\\u0000y"}', 'a: "x\\0y"\n', 400, "nul_character"),
    ('{"a\\u0000": 1}', '"a\\0": 1\n', 400, "nul_character"),
    ('{"a": 1e999}', "a: .inf\n", 400, "invalid_number"),
    ('{"a": [1e999]}', "a: [-.inf]\n", 400, "invalid_number"),
    ('{"max_amount": 5}', "max_amount: 5\n", 422, "amount_not_string"),
    ("[" * 2000 + "]" * 2000, "a: " + "[" * 2000 + "]" * 2000 + "\n", 400, "nesting_too_deep"),
]
YAML_ONLY_FAULTS = [
    ("a: &x 1\nb: *x\n", "yaml_alias_not_allowed"),
    ("a: &x [1, 2]\n", "yaml_alias_not_allowed"),
    ("a: !!binary aGVsbG8=\n", "yaml_tag_not_allowed"),
    ("a: !!str 5\n", "yaml_tag_not_allowed"),
    ("? !!merge <<\n: {amount: '1.00'}\namount: '99999.00'\n", "yaml_tag_not_allowed"),
    ("1: one\n", "invalid_yaml"),
    ("a: 'caf\xe9'\n", "invalid_utf8"),
]


@pytest.mark.parametrize("route", ["/v1/tenants/acme/policies", "/v1/tenants/acme/policies/simulate"])
async def test_policy_routes_check_yaml_as_they_check_json(client, audit_size, route):
    world = await make_world(client)
    before = await audit_size()
    headers = bearer(world.tenant_admin)
    for json_text, yaml_text, status, code in SAME_FAULT:
        for media_type, text in (("application/json", json_text), ("application/yaml", yaml_text)):
            r = await client.post(
                route, content=text.encode(), headers={**headers, "Content-Type": media_type}
            )
            assert r.headers["content-type"] == "application/problem+json", r.text
            assert (r.status_code, r.json()["code"]) == (status, code), (
                f"{media_type} {text[:60]!r}: {r.text}"
            )
    for yaml_text, code in YAML_ONLY_FAULTS:
        body = yaml_text.encode("latin-1")
        r = await client.post(route, content=body, headers={**headers, "Content-Type": "text/yaml"})
        assert (r.status_code, r.json()["code"]) == (400, code), f"{yaml_text!r}: {r.text}"
    assert await audit_size() == before
