"""`Idempotency-Key` on propose: a repeat returns the original answer and creates nothing, on
both backends, under concurrency, in two app instances and in two worker processes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.storage import open_database
from tests.integration.helpers import bearer, make_world, pay, verified_log
from tests.integration.process import GatewayProcess


async def propose(client, world, body, key, agent=None, token=None):
    headers = bearer(token or world.agent_token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(f"/v1/agents/{agent or world.agent}/propose", json=body, headers=headers)


async def proposed(client, world) -> list:
    return [e for e in await verified_log(client, world) if e.type == "action.proposed"]


async def test_a_repeat_returns_the_original_answer_and_creates_nothing(client):
    world = await make_world(client)
    first = await propose(client, world, pay("1200.00"), "order-1")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await propose(client, world, pay("1200.00"), "order-1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # same action_id, same signed verdict
    assert first.json()["signed_verdict"]["signature"]
    # the same body with its keys in another order is the same request
    reordered = {"action": dict(reversed(list(pay("1200.00")["action"].items())))}
    assert (await propose(client, world, reordered, "order-1")).json() == first.json()
    assert len(await proposed(client, world)) == 1
    # without a key, the same body is a new proposal
    assert (await propose(client, world, pay("1200.00"), None)).json()["action_id"] != first.json()[
        "action_id"
    ]
    # ESCALATE and DENY answers are replayed too
    escalated = await propose(client, world, pay("7800.00"), "order-2")
    assert escalated.json()["decision"] == "ESCALATE"
    assert (await propose(client, world, pay("7800.00"), "order-2")).json() == escalated.json()
    assert len(await proposed(client, world)) == 3


async def test_the_same_key_with_another_body_is_a_conflict(client):
    world = await make_world(client)
    assert (await propose(client, world, pay("10.00"), "k")).status_code == 201
    r = await propose(client, world, pay("11.00"), "k")
    assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await propose(client, world, {**pay("10.00"), "rationale": "changed"}, "k")
    assert r.status_code == 409
    assert len(await proposed(client, world)) == 1


async def test_keys_are_scoped_per_agent(client):
    world = await make_world(client)
    r = await client.post(
        f"/v1/tenants/{world.tenant}/agents", json={"id": "other"}, headers=bearer(world.tenant_admin)
    )
    other = r.json()["token"]
    mine = await propose(client, world, pay(), "shared-key")
    theirs = await propose(client, world, pay("99.00"), "shared-key", agent="other", token=other)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["action_id"] != theirs.json()["action_id"]
    assert "idempotent-replayed" not in theirs.headers


async def test_bad_keys_are_refused(client):
    world = await make_world(client)
    for key in ("", "x" * 256, "has space", "caf\u00e9"):
        headers = {**bearer(world.agent_token), "Idempotency-Key": key}
        try:
            r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=headers)
        except UnicodeEncodeError:
            continue  # the client cannot send it at all
        assert r.status_code == 400 and r.json()["code"] == "invalid_idempotency_key", key
    assert len(await proposed(client, world)) == 0


async def test_a_failed_proposal_remembers_nothing(client):
    world = await make_world(client)
    r = await propose(client, world, {"action": {"type": "pay_invoice", "amount": 1.5}}, "retry-me")
    assert r.status_code == 422
    r = await propose(client, world, pay(), "retry-me")
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers


async def test_a_record_older_than_a_day_no_longer_answers(client, backend):
    world = await make_world(client)
    first = (await propose(client, world, pay(), "old")).json()
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    try:  # as if a day had passed
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00.000000Z'"
                " WHERE idempotency_key = 'old'"
            )
    finally:
        await db.close()
    second = await propose(client, world, pay("5.00"), "old")  # a new request with the old key
    assert second.status_code == 201 and second.json()["action_id"] != first["action_id"]
    assert (await propose(client, world, pay("5.00"), "old")).json() == second.json()


async def test_concurrent_duplicates_create_exactly_one_action(client):
    world = await make_world(client)
    responses = await asyncio.gather(*(propose(client, world, pay("42.00"), "burst") for _ in range(30)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert len(await proposed(client, world)) == 1


async def test_concurrent_duplicates_in_two_gateways_create_exactly_one_action(backend):
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await make_world(a)
        for n in range(5):
            responses = await asyncio.gather(
                *(propose(c, world, pay(f"{n}.00"), f"key-{n}") for _ in range(10) for c in (a, b))
            )
            assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
            assert len({r.json()["action_id"] for r in responses}) == 1
        assert len(await proposed(a, world)) == 5


@pytest.mark.slow
async def test_concurrent_duplicates_in_two_worker_processes_create_exactly_one_action(backend):
    if backend.name != "postgresql":
        pytest.skip("several worker processes on one database: PostgreSQL")
    server = GatewayProcess({**backend.env(), "VERDICT_WORKERS": "2"}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http)
            for n in range(5):
                responses = await asyncio.gather(
                    *(propose(http, world, pay(f"{n}.00"), f"key-{n}") for _ in range(24))
                )
                assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
                assert len({r.json()["action_id"] for r in responses}) == 1
                assert len({r.text for r in responses}) == 1
            r = await http.get("/v1/actions", params={"limit": 100}, headers=bearer(world.auditor))
            assert len(r.json()["actions"]) == 5
    finally:
        server.stop()
