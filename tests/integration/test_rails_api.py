"""Rails through the HTTP app on both backends: secrets are write-only (never returned, logged or
audited: the entry holds their SHA-256), configurations are checked, removal is audited."""

from __future__ import annotations

import hashlib

import pytest

from tests.bank import API_KEY, ReferenceBank
from tests.integration.execution_helpers import configure_bank_rail, fast_executor_env
from tests.integration.helpers import bearer, make_world, read_log, verified_log


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fast_executor_env(monkeypatch)


async def test_secrets_are_write_only_and_audited_by_hash(client):
    world = await make_world(client)
    with ReferenceBank() as bank:
        view = await configure_bank_rail(client, world, bank)
    digest = "sha256:" + hashlib.sha256(API_KEY.encode()).hexdigest()
    assert view["secrets"] == {"api_key": digest}
    assert "api_key" not in view["config"] and view["kind"] == "bank_api"
    for path in (f"/v1/tenants/{world.tenant}/rails", f"/v1/tenants/{world.tenant}/rails/bank_api"):
        r = await client.get(path, headers=bearer(world.auditor))
        assert r.status_code == 200 and API_KEY not in r.text and digest in r.text
    raw = await read_log(client, world)
    assert all(API_KEY.encode() not in entry for entry in raw)
    configured = [e for e in await verified_log(client, world) if e.type == "rail.configured"]
    assert configured[0].data["secrets"] == {"api_key": digest}
    assert configured[0].actor.startswith("tenant_admin:")


async def test_rail_is_replaced_and_removed_with_audit(client):
    world = await make_world(client)
    with ReferenceBank() as bank:
        first = await configure_bank_rail(client, world, bank)
        second = await configure_bank_rail(client, world, bank, timeout_seconds=2)
    assert second["created_at"] == first["created_at"] and second["config"]["timeout_seconds"] == 2
    r = await client.delete(f"/v1/tenants/{world.tenant}/rails/bank_api", headers=bearer(world.tenant_admin))
    assert r.status_code == 204
    r = await client.get(f"/v1/tenants/{world.tenant}/rails/bank_api", headers=bearer(world.auditor))
    assert r.status_code == 404 and r.json()["code"] == "rail_not_found"
    r = await client.delete(f"/v1/tenants/{world.tenant}/rails/bank_api", headers=bearer(world.tenant_admin))
    assert r.status_code == 404
    types = [e.type for e in await verified_log(client, world) if e.type.startswith("rail.")]
    assert types == ["rail.configured", "rail.configured", "rail.removed"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"kind": "carrier_pigeon", "config": {}}, "unknown_rail_kind", "kind"),
        ({"kind": "bank_api", "config": {"api_key": "k"}}, "invalid_rail_config", "config.base_url"),
        (
            {"kind": "bank_api", "config": {"base_url": "https://bank.example"}},
            "invalid_rail_config",
            "config.api_key",
        ),
    ],
)
async def test_bad_configurations_are_refused(client, body, code, field):
    world = await make_world(client)
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/bank_api", json=body, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422 and r.json()["code"] == code and r.json()["field"] == field, r.text


async def test_private_bank_needs_the_operators_permission(client, monkeypatch):
    world = await make_world(client)
    monkeypatch.delenv("VERDICT_RAIL_ALLOW_PRIVATE")
    body = {"kind": "bank_api", "config": {"base_url": "http://127.0.0.1:9/", "api_key": "k"}}
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/bank_api", json=body, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422 and r.json()["field"] == "config.base_url"
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/Bad Name", json=body, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_rail_name"


async def test_only_tenant_admins_configure_and_tenants_are_walls(client):
    world = await make_world(client)
    other = await make_world(client, tenant="globex")
    body = {"kind": "bank_api", "config": {"base_url": "https://bank.example", "api_key": "k"}}
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/bank_api", json=body, headers=bearer(world.agent_token)
    )
    assert r.status_code in (403, 404)
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/bank_api", json=body, headers=bearer(world.auditor)
    )
    assert r.status_code == 403
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/bank_api", json=body, headers=bearer(other.tenant_admin)
    )
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"
