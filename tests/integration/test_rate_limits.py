"""Proposals per agent and minute (429 `rate_limited`), on both backends, in one process, in two
app instances on one database, and in two worker processes on one database."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import httpx
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.ratelimit import DEFAULT_PROPOSALS_PER_MINUTE, WINDOW_SECONDS
from tests.integration.helpers import bearer, make_world, pay, verified_log
from tests.integration.process import GatewayProcess


async def fresh_window(margin: float = 15.0) -> None:
    """Wait, if needed, so that the next `margin` seconds fall in one rate-limit window."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < margin:
        await asyncio.sleep(left + 0.05)


async def propose_many(client, world, n: int, agent=None, token=None) -> list[httpx.Response]:
    return await asyncio.gather(
        *(
            client.post(
                f"/v1/agents/{agent or world.agent}/propose",
                json=pay(f"{i}.00"),
                headers=bearer(token or world.agent_token),
            )
            for i in range(1, n + 1)
        )
    )


def statuses(responses) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in responses:
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
    return counts


async def set_limit(client, world, limit, agent=None):
    path = f"/v1/tenants/{world.tenant}" + (f"/agents/{agent}" if agent else "") + "/rate-limits"
    return await client.put(path, json={"propose_per_minute": limit}, headers=bearer(world.tenant_admin))


async def test_the_default_limit_refuses_the_101st_proposal_of_a_minute(client):
    world = await make_world(client, propose_per_minute=None)
    await fresh_window()
    responses = await propose_many(client, world, DEFAULT_PROPOSALS_PER_MINUTE + 5)
    assert statuses(responses) == {201: DEFAULT_PROPOSALS_PER_MINUTE, 429: 5}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "rate_limited" and problem["status"] == 429
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_SECONDS
    assert problem["retry_after_seconds"] == int(refused.headers["retry-after"])
    # refused proposals leave nothing behind: one action.proposed per created action
    entries = await verified_log(client, world)
    assert sum(e.type == "action.proposed" for e in entries) == DEFAULT_PROPOSALS_PER_MINUTE
    # another agent of the tenant has its own budget
    r = await client.post(
        f"/v1/tenants/{world.tenant}/agents", json={"id": "other"}, headers=bearer(world.tenant_admin)
    )
    other = r.json()["token"]
    r = await client.post("/v1/agents/other/propose", json=pay(), headers=bearer(other))
    assert r.status_code == 201


async def test_agent_limit_overrides_the_tenant_limit_and_changes_are_audited(client):
    world = await make_world(client, propose_per_minute=None)
    r = await client.get(f"/v1/tenants/{world.tenant}/rate-limits", headers=bearer(world.auditor))
    assert r.json() == {
        "default_propose_per_minute": 100,
        "propose_per_minute": None,
        "effective_propose_per_minute": 100,
        "agents": [],
    }
    r = await set_limit(client, world, 7)
    assert r.status_code == 200 and r.json()["effective_propose_per_minute"] == 7
    r = await set_limit(client, world, 3, agent=world.agent)
    assert r.status_code == 200, r.text
    assert r.json()["agents"] == [{"agent_id": world.agent, "propose_per_minute": 3}]
    await fresh_window()
    assert statuses(await propose_many(client, world, 10)) == {201: 3, 429: 7}
    # back to the tenant's limit: 7 in this window, 3 of them spent
    r = await set_limit(client, world, None, agent=world.agent)
    assert r.status_code == 200 and r.json()["agents"] == []
    assert statuses(await propose_many(client, world, 10)) == {201: 4, 429: 6}
    # raising the limit takes effect at once (the process forgets that it refused the agent)
    assert (await set_limit(client, world, 20)).status_code == 200
    assert statuses(await propose_many(client, world, 20)) == {201: 13, 429: 7}
    entries = await verified_log(client, world)
    changes = [e.data for e in entries if e.type == "rate_limit.set"]
    assert changes == [
        {"agent_id": None, "propose_per_minute": 7},
        {"agent_id": world.agent, "propose_per_minute": 3},
        {"agent_id": world.agent, "propose_per_minute": None},
        {"agent_id": None, "propose_per_minute": 20},
    ]
    assert all(e.actor.startswith("tenant_admin:") for e in entries if e.type == "rate_limit.set")


async def test_setting_limits_is_for_tenant_admins_and_checked(client):
    world = await make_world(client)
    for token in (world.auditor, world.agent_token):
        r = await client.put(
            f"/v1/tenants/{world.tenant}/rate-limits", json={"propose_per_minute": 5}, headers=bearer(token)
        )
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    for bad in (0, -1, 1_000_001):
        r = await set_limit(client, world, bad)
        assert r.status_code == 422 and r.json()["code"] == "invalid_rate_limit"
    r = await set_limit(client, world, 5, agent="nobody")
    assert r.status_code == 404 and r.json()["code"] == "agent_not_found"
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rate-limits",
        json={"propose_per_minute": "many"},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 400
    other = await make_world(client, "globex")
    r = await client.get(f"/v1/tenants/{world.tenant}/rate-limits", headers=bearer(other.tenant_admin))
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"


async def test_two_gateways_on_one_database_share_one_limit(backend):
    """Two app instances (as two processes would): the count lives in the database."""
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await make_world(a, propose_per_minute=25)
        await fresh_window()
        responses = await asyncio.gather(*(propose_many(c, world, 30) for c in (a, b)))
        assert statuses([r for batch in responses for r in batch]) == {201: 25, 429: 35}
        entries = await verified_log(a, world)
        assert sum(e.type == "action.proposed" for e in entries) == 25


@pytest.mark.slow
async def test_two_worker_processes_share_one_limit(backend):
    if backend.name != "postgresql":
        pytest.skip("several worker processes on one database: PostgreSQL")
    server = GatewayProcess({**backend.env(), "VERDICT_WORKERS": "2"}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http, propose_per_minute=40)
        await fresh_window(20)
        # many connections, so that both workers take proposals
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            responses = await propose_many(http, world, 150)
            assert statuses(responses) == {201: 40, 429: 110}
            r = await http.get("/v1/actions", params={"limit": 100}, headers=bearer(world.auditor))
            assert len(r.json()["actions"]) == 40
    finally:
        server.stop()


async def test_public_routes_are_limited_per_client_address(backend):
    app = create_app(backend.settings(public_rate_per_second=0.01, public_burst=3))
    async with AsyncTestClient(app=app) as client:
        assert [(await client.get("/v1/keys")).status_code for _ in range(3)] == [200] * 3
        r = await client.get("/v1/keys")
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
        assert (await client.get("/schema/openapi.json")).status_code == 429  # one bucket per address
        # the wallet-approval routes need no token, so they are limited the same way
        for method, path in (
            ("GET", "/v1/actions/act_x/approval-request?role=cfo"),
            ("POST", "/v1/actions/act_x/approve"),
            ("POST", "/v1/actions/act_x/reject"),
            ("POST", "/v1/tenants/acme/approvals/bulk"),
            ("POST", "/v1/tenants/acme/approvals/bulk-request"),
        ):
            r = await client.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 429 and r.json()["code"] == "rate_limited", (path, r.text)
        for _ in range(10):  # health checks are never limited
            assert (await client.get("/health")).status_code == 200
