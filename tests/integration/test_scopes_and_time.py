"""Agent scopes (set through the API, audited, exact across gateways) and the tenant's time zone,
on both backends."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.helpers import bearer, make_world, pay, verified_log

ZONED = """\
schema: verdict.policy/v1
default: DENY
rules:
  - {id: new-york-desk, decision: DENY, reason: new_york, match: {tenant.timezone: {eq: America/New_York}}}
  - {id: allow-rest, decision: ALLOW, match: {}}
"""


async def propose(client: Any, world: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text
    return r.json()


def scope_path(world: Any, agent: str | None = None) -> str:
    return f"/v1/tenants/{world.tenant}/agents/{agent or world.agent}/scope"


async def test_a_scope_denies_before_any_rule_and_is_audited(client):
    world = await make_world(client)
    r = await client.get(scope_path(world), headers=bearer(world.auditor))
    assert r.status_code == 200 and r.json() == {"tenant_id": "acme", "agent_id": "ap-bot", "scope": None}
    scope = {"action_types": ["pay_invoice"], "assets": ["USDC"], "max_amount": "10000"}
    r = await client.put(scope_path(world), json=scope, headers=bearer(world.tenant_admin))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == scope
    assert (await client.get(scope_path(world), headers=bearer(world.auditor))).json()["scope"] == scope

    assert (await propose(client, world, pay("1200.00")))["decision"] == "ALLOW"
    for body, which in (
        ({"action": {"type": "wire", "amount": "5", "asset": "USDC"}}, "action_type"),
        (pay("1200.00", asset="EURC"), "asset"),
        (pay("10000.01"), "amount"),
    ):
        out = await propose(client, world, body)
        assert (out["decision"], out["reason"]) == ("DENY", f"scope_violation:{which}"), out
        assert out["matched_rules"] == []  # before any rule
        assert out["checks"][0]["kind"] == "scope"
    # blocked vendor or not: the scope speaks first
    out = await propose(client, world, pay("60000", vendor="evil-corp"))
    assert out["reason"] == "scope_violation:amount"

    r = await client.put(scope_path(world), content=b"null", headers={**bearer(world.tenant_admin),
                         "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 200 and r.json()["scope"] is None, r.text
    assert (await propose(client, world, pay("10000.01")))["decision"] == "ESCALATE"
    entries = [e for e in await verified_log(client, world) if e.type == "agent.scope_set"]
    assert [e.data for e in entries] == [
        {"agent": "ap-bot", "scope": scope},
        {"agent": "ap-bot", "scope": None},
    ]
    assert entries[0].actor.startswith("tenant_admin:")


async def test_bad_scopes_and_callers_are_refused(client):
    world = await make_world(client)
    r = await client.put(scope_path(world), json={"max_amount": "-1"}, headers=bearer(world.tenant_admin))
    assert r.status_code == 422 and r.json()["code"] == "scope_invalid", r.text
    assert r.json()["problems"][0]["path"] == "max_amount"
    r = await client.put(scope_path(world), json={"colour": "red"}, headers=bearer(world.tenant_admin))
    assert r.status_code == 400 and r.json()["code"] == "unknown_field"
    r = await client.put(scope_path(world, "nobody"), json={}, headers=bearer(world.tenant_admin))
    assert r.status_code == 404 and r.json()["code"] == "agent_not_found"
    r = await client.put(scope_path(world), json={}, headers=bearer(world.auditor))
    assert r.status_code == 403
    other = await make_world(client, "globex")
    r = await client.put(scope_path(world), json={}, headers=bearer(other.tenant_admin))
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"
    assert [e for e in await verified_log(client, world) if e.type == "agent.scope_set"] == []


async def test_a_narrowed_scope_applies_in_a_gateway_that_cached_the_old_one(backend):
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await make_world(a)
        assert (await propose(b, world, pay("1200.00")))["decision"] == "ALLOW"  # b caches the agent
        r = await a.put(scope_path(world), json={"assets": ["EURC"]}, headers=bearer(world.tenant_admin))
        assert r.status_code == 200, r.text
        out = await propose(b, world, pay("1200.00"))
        assert (out["decision"], out["reason"]) == ("DENY", "scope_violation:asset")
        r = await a.put(scope_path(world), json={"assets": ["USDC"]}, headers=bearer(world.tenant_admin))
        assert (await propose(b, world, pay("1200.00")))["decision"] == "ALLOW"


async def test_the_tenant_time_zone_reaches_the_policy(client):
    world = await make_world(client, policy=ZONED)
    tenant = (await client.get("/v1/tenants/acme", headers=bearer(world.auditor))).json()
    assert tenant["timezone"] is None
    assert (await propose(client, world, pay()))["decision"] == "ALLOW"
    path = "/v1/tenants/acme"
    r = await client.patch(path, json={"timezone": "America/New_York"}, headers=bearer(world.tenant_admin))
    assert r.status_code == 200 and r.json()["timezone"] == "America/New_York", r.text
    out = await propose(client, world, pay())
    assert (out["decision"], out["reason"]) == ("DENY", "new_york")
    # changing only the RPC URL keeps the zone
    r = await client.patch(path, json={"rpc_url": "https://rpc.example"}, headers=bearer(world.tenant_admin))
    assert r.json()["timezone"] == "America/New_York" and r.json()["rpc_endpoint"] == "https://rpc.example"
    r = await client.patch(path, json={"timezone": "Mars/Olympus_Mons"}, headers=bearer(world.tenant_admin))
    assert r.status_code == 422 and r.json()["code"] == "invalid_timezone"
    r = await client.patch(path, json={"timezone": None}, headers=bearer(world.tenant_admin))
    assert r.json()["timezone"] is None
    assert (await propose(client, world, pay()))["decision"] == "ALLOW"
    updates = [e.data for e in await verified_log(client, world) if e.type == "tenant.updated"]
    assert {"timezone": "America/New_York"} in updates


async def test_a_tenant_created_with_a_time_zone(client):
    world = await make_world(client, policy=ZONED, timezone="America/New_York")
    assert (await propose(client, world, pay()))["reason"] == "new_york"
    admin = client.app_state.keyring.admin_token
    r = await client.post("/v1/tenants", json={"id": "zoneless", "name": "z", "timezone": "EST+5"},
                          headers=bearer(admin))  # fmt: skip
    assert r.status_code == 422 and r.json()["code"] == "invalid_timezone"
