"""Helpers for integration tests: set up a tenant with a policy and an agent through the API."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from audit import verify_chain
from gateway.demo import DEMO_POLICY

EXAMPLE_POLICY = DEMO_POLICY  # the same document as examples/policy.yaml


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    tenant: str
    admin_token: str
    tenant_admin: str
    auditor: str
    agent: str
    agent_token: str


# make_world's tenant limit: high, so that tests about something else may propose freely.
# Tests of the default limit pass `propose_per_minute=None`.
TEST_PROPOSALS_PER_MINUTE = 1_000_000


async def make_world(
    client: Any,
    tenant: str = "acme",
    policy: str = EXAMPLE_POLICY,
    propose_per_minute: int | None = TEST_PROPOSALS_PER_MINUTE,
    **tenant_fields: Any,
) -> World:
    admin = client.app_state.keyring.admin_token
    r = await client.post(
        "/v1/tenants", json={"id": tenant, "name": f"{tenant} corp", **tenant_fields}, headers=bearer(admin)
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/tenants/{tenant}/api-keys", json={"role": "tenant_admin"}, headers=bearer(admin)
    )
    assert r.status_code == 201, r.text
    tenant_admin = r.json()["token"]
    r = await client.post(
        f"/v1/tenants/{tenant}/api-keys", json={"role": "auditor"}, headers=bearer(tenant_admin)
    )
    assert r.status_code == 201, r.text
    auditor = r.json()["token"]
    r = await client.post(
        f"/v1/tenants/{tenant}/agents", json={"id": "ap-bot", "name": "AP bot"}, headers=bearer(tenant_admin)
    )
    assert r.status_code == 201, r.text
    agent_token = r.json()["token"]
    if policy:
        r = await client.post(
            f"/v1/tenants/{tenant}/policies",
            content=policy.encode(),
            headers={**bearer(tenant_admin), "Content-Type": "application/yaml"},
        )
        assert r.status_code == 201, r.text
    if propose_per_minute is not None:
        r = await client.put(
            f"/v1/tenants/{tenant}/rate-limits",
            json={"propose_per_minute": propose_per_minute},
            headers=bearer(tenant_admin),
        )
        assert r.status_code == 200, r.text
    return World(tenant, admin, tenant_admin, auditor, "ap-bot", agent_token)


def pay(amount: str = "1200.00", vendor: str = "acme-supplies", **extra: Any) -> dict[str, Any]:
    return {
        "action": {
            "type": "pay_invoice",
            "invoice_id": "inv_8231",
            "amount": amount,
            "asset": "USDC",
            "vendor": vendor,
            **extra,
        }
    }


async def read_log(client: Any, world: World) -> list[bytes]:
    """Every entry of the tenant's log, as the exact stored bytes."""
    raw: list[bytes] = []
    while True:
        r = await client.get(
            f"/v1/tenants/{world.tenant}/audit/entries",
            params={"start": len(raw)},
            headers=bearer(world.auditor),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        raw.extend(base64.b64decode(e["entry"]) for e in body["entries"])
        if len(raw) >= body["size"]:
            return raw


async def verified_log(client: Any, world: World):
    """The tenant's log, checked link by link (raises audit.ChainError on any break)."""
    return verify_chain(await read_log(client, world), tenant=world.tenant)
