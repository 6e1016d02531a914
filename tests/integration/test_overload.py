"""Overload (gateway.admission, gateway.ledger's queue bound), on both backends: a flooded
gateway answers only 201 or 503 `overloaded` with `Retry-After`, quickly, and what it refused
left nothing behind."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx

from gateway.app import create_app
from gateway.client import AsyncVerdictClient
from tests.integration.helpers import bearer, make_world, pay, verified_log
from tests.integration.process import GatewayProcess

FLOOD_TIMEOUT_SECONDS = 120  # generous: a hang fails the test, a slow machine does not


@asynccontextmanager
async def in_loop(backend, **settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in the test's own event loop, so that gathered requests really overlap
    (Litestar's test client hands each request to its portal thread one at a time)."""
    app = create_app(backend.settings(**settings))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            http.app_state = app.state
            yield http


def check_overloaded(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (503, "overloaded")
    assert problem["request_id"] == response.headers["x-request-id"]


async def proposals_in_log(http, world) -> int:
    return sum(e.type == "action.proposed" for e in await verified_log(http, world))


async def flood(http, world, n: int) -> list[httpx.Response]:
    async with asyncio.timeout(FLOOD_TIMEOUT_SECONDS):
        return await asyncio.gather(
            *(
                http.post(
                    f"/v1/agents/{world.agent}/propose",
                    json=pay(f"{i}.00"),
                    headers=bearer(world.agent_token),
                )
                for i in range(1, n + 1)
            )
        )


async def test_one_slot_and_no_queue_refuses_the_overlap_with_503(backend):
    async with in_loop(backend, max_in_flight=1, max_queued=0) as client:
        app = client
        world = await make_world(client)
        responses = await flood(client, world, 30)
        counts = Counter(r.status_code for r in responses)
        assert set(counts) == {201, 503}, counts  # the first holds the slot across its commit
        for response in responses:
            if response.status_code == 503:
                check_overloaded(response)
        # nothing of what was refused was decided or written
        assert await proposals_in_log(client, world) == counts[201]
        assert app.app_state.admission.refused == counts[503]
        assert app.app_state.admission.active == 0 and not app.app_state.admission.waiting
        # the health check is never shed
        assert (await client.get("/health")).status_code == 200


async def test_a_queue_admits_in_turn_instead_of_refusing(backend):
    async with in_loop(backend, max_in_flight=1, max_queued=64, queue_wait=FLOOD_TIMEOUT_SECONDS) as client:
        app = client
        world = await make_world(client)
        responses = await flood(client, world, 20)
        assert {r.status_code for r in responses} == {201}
        assert await proposals_in_log(client, world) == 20
        assert app.app_state.admission.active == 0 and not app.app_state.admission.waiting


async def test_batches_beyond_their_own_limit_are_refused_whole(backend):
    async with in_loop(backend, max_batches_in_flight=1, queue_wait=0) as client:
        world = await make_world(client)
        url, headers = f"/v1/agents/{world.agent}/propose/batch", bearer(world.agent_token)
        assert (await client.post(url, json={"actions": [pay()]}, headers=headers)).status_code == 200
        before = await proposals_in_log(client, world)
        async with asyncio.timeout(FLOOD_TIMEOUT_SECONDS):
            responses = await asyncio.gather(
                *(
                    client.post(url, json={"actions": [pay(f"{i}.00")] * 10}, headers=headers)
                    for i in range(1, 9)
                )
            )
        counts = Counter(r.status_code for r in responses)
        assert set(counts) == {200, 503}, counts  # the first holds the one slot across its commit
        for response in responses:
            if response.status_code == 503:
                check_overloaded(response)
        assert await proposals_in_log(client, world) == before + 10 * counts[200]


async def test_a_full_chain_writer_queue_refuses_proposals_and_batches(client):
    world = await make_world(client)
    assert (await flood(client, world, 1))[0].status_code == 201
    before = await proposals_in_log(client, world)
    client.app_state.ledger.writer(world.tenant).max_pending = 0
    single = (await flood(client, world, 1))[0]
    assert single.status_code == 503
    check_overloaded(single)
    batch = await client.post(
        f"/v1/agents/{world.agent}/propose/batch",
        json={"actions": [pay()]},
        headers=bearer(world.agent_token),
    )
    assert batch.status_code == 503 and batch.json()["code"] == "overloaded"
    assert await proposals_in_log(client, world) == before
    client.app_state.ledger.writer(world.tenant).max_pending = 2048
    assert (await flood(client, world, 1))[0].status_code == 201


async def test_a_flooded_server_answers_only_201_or_503_and_keeps_serving(backend):
    env = {
        **backend.env(),
        "VERDICT_MAX_IN_FLIGHT": "2",
        "VERDICT_MAX_QUEUED": "2",
        "VERDICT_QUEUE_WAIT": "0.05",
    }
    server = GatewayProcess(env).start(timeout=60)
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=FLOOD_TIMEOUT_SECONDS, limits=limits
        ) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http)
            responses = await flood(http, world, 200)
            counts = Counter(r.status_code for r in responses)
            assert set(counts) <= {201, 503} and counts[201] >= 1, counts
            for response in responses:
                if response.status_code == 503:
                    check_overloaded(response)
            assert await proposals_in_log(http, world) == counts[201]
        # the client resends what was refused for overload, and batches in hundreds
        async with AsyncVerdictClient(server.url, world.agent_token) as verdict:
            results = await verdict.propose_many(
                world.agent, [pay(f"{i}.00")["action"] for i in range(1, 131)], explain=False
            )
        assert len(results) == 130 and {x["status"] for x in results} == {201}
        assert all(x["result"]["decision"] == "ALLOW" and x["result"]["checks"] is None for x in results)
    finally:
        server.stop()
