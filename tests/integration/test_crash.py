"""A gateway killed with SIGKILL under load loses no answered action and leaves no action
without its audit entries (DESIGN invariant 2), on both backends."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.helpers import EXAMPLE_POLICY, World, bearer, pay, verified_log
from tests.integration.process import GatewayProcess

pytestmark = pytest.mark.slow


async def seed(url: str, admin: str) -> World:
    async with httpx.AsyncClient(base_url=url) as http:
        assert (
            await http.post("/v1/tenants", json={"id": "acme", "name": "Acme"}, headers=bearer(admin))
        ).status_code == 201
        tenant_admin = (
            await http.post("/v1/tenants/acme/api-keys", json={"role": "tenant_admin"}, headers=bearer(admin))
        ).json()["token"]
        auditor = (
            await http.post("/v1/tenants/acme/api-keys", json={"role": "auditor"}, headers=bearer(admin))
        ).json()["token"]
        agent = (
            await http.post("/v1/tenants/acme/agents", json={"id": "ap-bot"}, headers=bearer(tenant_admin))
        ).json()["token"]
        r = await http.post(
            "/v1/tenants/acme/policies",
            content=EXAMPLE_POLICY.encode(),
            headers={**bearer(tenant_admin), "Content-Type": "application/yaml"},
        )
        assert r.status_code == 201
        r = await http.put(  # this test counts what load commits, not the default rate limit
            "/v1/tenants/acme/rate-limits",
            json={"propose_per_minute": 1_000_000},
            headers=bearer(tenant_admin),
        )
        assert r.status_code == 200, r.text
    return World("acme", admin, tenant_admin, auditor, "ap-bot", agent)


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigkill_under_load_loses_nothing_answered(backend, workers):
    """With 2 workers, two processes append to one tenant's chain at once when killed."""
    server = GatewayProcess({**backend.env(), "VERDICT_WORKERS": str(workers)}).start()
    answered: list[str] = []
    statuses: list[int] = []
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        world = await seed(server.url, admin)
        stop = asyncio.Event()

        async def worker(n: int) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = await http.post(
                            f"/v1/agents/{world.agent}/propose",
                            json=pay(f"{n}.{i:04d}"),
                            headers=bearer(world.agent_token),
                        )
                    except httpx.HTTPError:
                        return  # the server is gone
                    statuses.append(r.status_code)
                    if r.status_code == 201:
                        answered.append(r.json()["action_id"])

        tasks = [asyncio.create_task(worker(n)) for n in range(16)]
        deadline = time.monotonic() + 20
        while len(answered) < 150 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server.kill()  # mid-flight: requests are in the writer's queue and in open transactions
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        server.stop()
    assert len(answered) >= 150
    assert 500 not in statuses

    app = create_app(backend.settings())
    async with AsyncTestClient(app=app) as c:
        entries = await verified_log(c, world)  # contiguous, every prev right
        by_seq = {e.seq: e for e in entries}
        for action_id in answered:  # every answered action survived
            assert (await c.get(f"/v1/actions/{action_id}", headers=bearer(world.auditor))).status_code == 200
        stored, cursor = [], None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/v1/actions", params=params, headers=bearer(world.auditor))).json()
            stored += page["actions"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(stored) >= len(answered)
        for action in stored:  # no action without its audit entries
            ids = action["audit_event_ids"]
            assert ids and all(by_seq[i].action_id == action["action_id"] for i in ids)
            assert by_seq[ids[0]].type == "action.proposed"
        proposed = [e for e in entries if e.type == "action.proposed"]
        assert len(proposed) == len(stored)  # and no audit entry without its action
