"""Concurrency, restart and multi-writer behaviour of the hash-chained log, on both backends."""

from __future__ import annotations

import asyncio

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.helpers import bearer, make_world, pay, verified_log


async def test_200_concurrent_proposals_keep_the_chain_contiguous(client):
    world = await make_world(client)
    amounts = [str(100 + i) if i % 3 else str(6000 + i) for i in range(200)]

    async def one(amount):
        return await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=bearer(world.agent_token)
        )

    responses = await asyncio.gather(*(one(a) for a in amounts))
    assert [r.status_code for r in responses] == [201] * 200
    batches = client.app_state.ledger.writer(world.tenant).batches
    if client.app_state.db.supports_fast_append:
        assert batches["fast"] > 0  # proposals took the one-statement path
    entries = await verified_log(client, world)  # raises on any gap or wrong prev
    assert [e.seq for e in entries] == list(range(len(entries)))
    by_action = {}
    for entry in entries:
        if entry.action_id:
            by_action.setdefault(entry.action_id, []).append(entry)
    for r in responses:
        out = r.json()
        kinds = [e.type for e in by_action[out["action_id"]]]
        assert kinds == (
            ["action.proposed", "verdict.issued"] if out["decision"] == "ALLOW" else ["action.proposed"]
        )
        assert by_action[out["action_id"]][0].seq == out["audit_event_id"]


async def test_two_tenants_write_concurrently_into_separate_chains(client):
    acme = await make_world(client, "acme")
    globex = await make_world(client, "globex")

    async def one(world, i):
        return await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(str(i)), headers=bearer(world.agent_token)
        )

    responses = await asyncio.gather(*(one(w, i) for i in range(50) for w in (acme, globex)))
    assert all(r.status_code == 201 for r in responses)
    for world in (acme, globex):
        entries = await verified_log(client, world)
        assert sum(e.type == "action.proposed" for e in entries) == 50


async def test_two_gateways_on_one_database_share_one_chain(backend):
    """Two app instances (as two processes would) append to the same tenant log at once.
    On PostgreSQL the chain head row lock keeps one chain; on SQLite the file lock does."""
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await make_world(a)

        async def one(c, i):
            return await c.post(
                f"/v1/agents/{world.agent}/propose", json=pay(str(i)), headers=bearer(world.agent_token)
            )

        responses = await asyncio.gather(*(one(c, i) for i in range(60) for c in (a, b)))
        assert all(r.status_code == 201 for r in responses), [
            r.text for r in responses if r.status_code != 201
        ]
        entries = await verified_log(a, world)
        assert sum(e.type == "action.proposed" for e in entries) == 120


async def test_state_survives_a_restart(backend):
    app = create_app(backend.settings())
    async with AsyncTestClient(app=app) as c:
        c.app_state = app.state
        world = await make_world(c)
        first = (
            await c.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
        ).json()
        signer = app.state.keyring.verdict_signer.address
    app = create_app(backend.settings())
    async with AsyncTestClient(app=app) as c:
        c.app_state = app.state
        assert app.state.keyring.verdict_signer.address == signer  # same key after restart
        assert app.state.keyring.admin_token == world.admin_token
        r = await c.get(f"/v1/actions/{first['action_id']}", headers=bearer(world.auditor))
        assert r.status_code == 200 and r.json()["signed_verdict"] == first["signed_verdict"]
        second = await c.post(
            f"/v1/agents/{world.agent}/propose", json=pay("7000"), headers=bearer(world.agent_token)
        )
        assert second.status_code == 201
        entries = await verified_log(c, world)  # the chain continues across the restart
        assert entries[-1].action_id == second.json()["action_id"]


DENY_ALL = """\
schema: verdict.policy/v1
rules:
  - id: freeze
    decision: DENY
    reason: payments_frozen
    match: {}
"""


async def test_a_decision_commits_only_under_the_active_policy(backend):
    """Gateway A has seen version 1 active; gateway B activates version 2. A's next proposal
    must be decided under version 2 — checked at commit under the chain head lock."""
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await make_world(a)
        r = await a.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
        assert (r.json()["decision"], r.json()["policy_version"]) == ("ALLOW", 1)
        r = await b.post(
            "/v1/tenants/acme/policies",
            content=DENY_ALL.encode(),
            headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
        )
        assert r.json()["version"] == 2
        r = await a.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
        out = r.json()
        assert (out["decision"], out["reason"], out["policy_version"]) == ("DENY", "payments_frozen", 2)
        r = await b.post("/v1/tenants/acme/policies/1/activate", headers=bearer(world.tenant_admin))
        assert r.status_code == 200
        r = await a.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
        assert (r.json()["decision"], r.json()["policy_version"]) == ("ALLOW", 1)
