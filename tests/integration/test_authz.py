"""The access table, walked: every route of the OpenAPI schema x every role x own tenant,
another tenant and a missing object, on both backends."""

from __future__ import annotations

import pytest
from litestar import Litestar, get

from gateway.auth import ADMIN, AGENT, AUDITOR, TENANT_ADMIN
from gateway.authz import ACCESS, GLOBAL, PUBLIC, TENANT, UnlistedRoute, access_for, bind_access
from gateway.routes import ROUTES
from tests.integration.helpers import bearer, make_world, pay

ROLES = (ADMIN, TENANT_ADMIN, AUDITOR, AGENT, None)
TARGETS = ("own", "other", "missing")
METHODS = ("get", "post", "put", "patch", "delete")
# valid bodies where the service, not the table, tells another tenant's object apart
BODIES = {
    ("POST", "/v1/agents/{agent_id}/propose"): pay(),
    ("POST", "/v1/agents/{agent_id}/propose/batch"): {"actions": [pay()]},
    ("POST", "/v1/executions/{execution_id}/rollback"): {"reason": "authz walk"},
    ("POST", "/v1/actions/{action_id}/rollback"): {"reason": "authz walk"},
}
WEBSOCKETS = {("GET", "/v1/tenants/{tenant_id}/events/ws")}


@pytest.fixture
async def client(backend):
    """The app with the per-address limit of the public routes out of the way: the walk calls
    each public route 15 times within seconds, and a 429 would hide the answer the table gives
    (the limit itself is tested in test_rate_limits.py and test_address_limits.py)."""
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    app = create_app(backend.settings(public_rate_per_second=10_000.0, public_burst=100_000))
    async with AsyncTestClient(app=app) as test_client:
        test_client.app_state = app.state
        yield test_client


async def objects(client, world, tenant: str) -> dict[str, str]:
    """Path values naming objects of `tenant`: its spare agent, an action, a fresh key."""
    r = await client.post(
        f"/v1/tenants/{tenant}/agents", json={"id": f"{tenant}-spare"}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 201, r.text
    address = "0x" + ("a1" if tenant == "acme" else "b2") * 20
    r = await client.post(
        f"/v1/tenants/{tenant}/approvers",
        json={"address": address, "roles": ["cfo"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text
    action_id = r.json()["action_id"]
    # a rail that never answers (.invalid never resolves, RFC 2606) and an execution that stays pending
    rail = {"kind": "bank_api", "config": {"base_url": "https://bank.invalid", "api_key": "k"}}
    r = await client.put(
        f"/v1/tenants/{tenant}/rails/bank_api", json=rail, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/actions/{action_id}/execute", json={}, headers=bearer(world.agent_token))
    assert r.status_code == 202, r.text
    execution_id = r.json()["execution_id"]
    r = await client.post(f"/v1/tenants/{tenant}/audit/checkpoint", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text  # the log's first tile exists from now on
    return {
        "tenant_id": tenant,
        "agent_id": f"{tenant}-spare",
        "action_id": action_id,
        "version": "1",
        "address": address,
        "name": "bank_api",
        "execution_id": execution_id,
        "tile_path": "0/000.p/1",
    }


async def fresh_webhook(client, world) -> str:
    """A webhook of the tenant (a public address, for no event type that exists: nothing is sent)."""
    r = await client.post(
        f"/v1/tenants/{world.tenant}/webhooks",
        json={"url": "https://93.184.215.14/hook", "types": ["no.such_type"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def fresh_key(client, world) -> str:
    r = await client.post(
        f"/v1/tenants/{world.tenant}/api-keys", json={"role": "auditor"}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def expected(access, role: str | None, target: str) -> tuple[str, int | None, str | None]:
    """What the table promises: "allowed" (not 401/403/404), "admitted" (not 401/403),
    "hidden" (404), or an exact (status, code)."""
    if access.scope == PUBLIC:
        # public routes about an object (the wallet-approval routes) still say when it is missing
        return ("admitted" if target == "missing" else "allowed"), None, None
    if role is None:
        return "exact", 401, "missing_credentials"
    if target != "own" and access.scope == TENANT and role != ADMIN:
        return "exact", 404, "tenant_not_found"
    if role not in access.roles:
        return "exact", 403, "forbidden_role"
    if target == "own" or access.scope == GLOBAL or (role == ADMIN and target == "other"):
        return "allowed", None, None
    if role == ADMIN:  # every tenant is the admin's, but a missing one is missing
        return "admitted", None, None
    return "hidden", 404, None


async def test_every_route_and_role_gets_what_the_table_says(client):
    acme = await make_world(client, "acme")
    globex = await make_world(client, "globex")
    values = {"own": await objects(client, acme, "acme"), "other": await objects(client, globex, "globex")}
    values["missing"] = {
        "tenant_id": "nope",
        "agent_id": "nope",
        "action_id": "act_0000000000000000000000000n",
        "version": "1",
        "key_id": "key_nope",
        "address": "0x" + "c3" * 20,
        "name": "nope",
        "execution_id": "exe_0000000000000000000000000n",
        "webhook_id": "wh_nope",
        "tile_path": "0/000.p/1",
    }
    tokens = {
        ADMIN: acme.admin_token,
        TENANT_ADMIN: acme.tenant_admin,
        AUDITOR: acme.auditor,
        AGENT: acme.agent_token,
        None: None,
    }
    schema = client.app.openapi_schema.to_schema()
    walked = set()
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            access = access_for(method.upper(), path)
            assert access is not None, f"{method.upper()} {path} is missing from gateway/authz.py ACCESS"
            walked.add((method.upper(), path))
            for role in ROLES:
                answers = {}
                for target in TARGETS:
                    params = dict(values[target])
                    if "{key_id}" in path and target != "missing":
                        params["key_id"] = await fresh_key(client, acme if target == "own" else globex)
                    if "{webhook_id}" in path and target != "missing":
                        params["webhook_id"] = await fresh_webhook(
                            client, acme if target == "own" else globex
                        )
                    if "{agent_id}" in path and "propose" in path and target == "own":
                        params["agent_id"] = acme.agent
                    url = path.format(**params)
                    kwargs = {"headers": bearer(tokens[role]) if role else {}}
                    if path == "/v1/actions":
                        kwargs["params"] = {"tenant_id": params["tenant_id"]}
                    if path.endswith("/approval-request"):
                        kwargs["params"] = {"role": "cfo"}
                    if method in ("post", "put", "patch"):
                        kwargs["json"] = BODIES.get((method.upper(), path), {})
                    if path.endswith("/events/stream"):  # endless once admitted: refuse its start (400)
                        kwargs["headers"] = {**kwargs["headers"], "Last-Event-ID": "not-a-seq"}
                    r = await client.request(method.upper(), url, **kwargs)
                    got = (r.status_code, r.json().get("code") if r.status_code >= 400 else None)
                    answers[target] = got
                    kind, status, code = expected(access, role, target)
                    where = f"{method.upper()} {url} as {role} ({target}): {r.text[:200]}"
                    if kind == "allowed":
                        assert r.status_code not in (401, 403, 404), where
                    elif kind == "admitted":
                        assert r.status_code not in (401, 403), where
                    elif kind == "hidden":
                        assert r.status_code == 404, where
                    else:
                        assert got == (status, code), where
                if role not in (None, ADMIN) and access.scope != PUBLIC:
                    # another tenant's object looks exactly like none at all
                    assert answers["other"] == answers["missing"], (method, path, role, answers)
    # The console's pages are not API routes (no OpenAPI entry): their session cookie, CSRF and
    # origin checks are walked by tests/integration/test_console_sessions.py.
    documented = {
        key
        for key, access in ACCESS.items()
        if not key[1].startswith(("/schema", "/console")) and key[1] != "*"
    }
    documented -= WEBSOCKETS  # not in the OpenAPI schema: tests/integration/test_events_live.py walks them
    assert walked == documented


def test_an_unlisted_route_stops_the_app_from_starting():
    @get("/v1/forgotten")
    async def forgotten() -> None:
        return None

    with pytest.raises(UnlistedRoute, match="/v1/forgotten"):
        bind_access(Litestar(route_handlers=[*ROUTES, forgotten]))


def test_a_rule_without_a_route_stops_the_app_from_starting():
    with pytest.raises(UnlistedRoute, match="rules without a route"):
        kept = [r for r in ROUTES if isinstance(r, type) or r.fn.__name__ != "list_api_keys"]  # type: a Controller
        bind_access(Litestar(route_handlers=kept))
