"""The clients on the events: wait_for_approval wakes on the commit and survives a gateway
restart; events() and `verdict events tail` list the log; AsyncVerdictClient does the same."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx
import pytest

from gateway.client import AsyncVerdictClient, VerdictClient
from tests.integration.helpers import bearer, make_world, pay
from tests.integration.process import GatewayProcess

ENV = {"VERDICT_ACCESS_LOG": "0"}


@pytest.fixture
async def live(backend):
    server = GatewayProcess({**backend.env(), **ENV}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http)
            yield SimpleNamespace(server=server, http=http, world=world, backend=backend)
    finally:
        server.stop()


async def test_async_wait_for_approval_returns_as_soon_as_the_action_leaves_pending(live) -> None:
    world = live.world
    async with AsyncVerdictClient(live.server.url, world.agent_token) as client:
        answer = await client.propose(world.agent, pay("7800.00")["action"])
        assert answer["decision"] == "ESCALATE"
        waiting = asyncio.ensure_future(client.wait_for_approval(answer["action_id"], timeout=60))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        cancelled_at = time.monotonic()
        r = await live.http.delete(f"/v1/actions/{answer['action_id']}", headers=bearer(world.tenant_admin))
        assert r.status_code == 200, r.text
        record = await asyncio.wait_for(waiting, 30)
        assert record["status"] == "cancelled"
        assert time.monotonic() - cancelled_at < 5  # a wake-up, not the next 50 s long poll
        with pytest.raises(TimeoutError):
            other = await client.propose(world.agent, pay("7900.00")["action"])
            await client.wait_for_approval(other["action_id"], timeout=0.5)


@pytest.mark.slow
def test_wait_for_approval_resumes_after_the_gateway_restarts(backend) -> None:
    env = {**backend.env(), **ENV}
    server = GatewayProcess(env).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()

        async def setup():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
                return await make_world(http)

        world = asyncio.run(setup())
        with VerdictClient(server.url, world.agent_token) as client:
            action_id = client.propose(world.agent, pay("7800.00")["action"])["action_id"]
            result: dict = {}

            def wait() -> None:
                try:
                    result["record"] = client.wait_for_approval(action_id, timeout=120, poll_interval=0.2)
                except BaseException as exc:  # reported by the assertion below
                    result["error"] = exc

            import threading

            waiter = threading.Thread(target=wait)
            waiter.start()
            time.sleep(1.0)
            server.kill()  # the long poll's connection drops; the client backs off and retries
            time.sleep(1.0)
            restarted = GatewayProcess(env)  # on the same port: the client's URL
            restarted.port, restarted.url = server.port, server.url
            restarted.env["VERDICT_PORT"] = str(server.port)
            server = restarted.start()
            r = httpx.delete(
                f"{server.url}/v1/actions/{action_id}", headers=bearer(world.tenant_admin), timeout=30
            )
            assert r.status_code == 200, r.text
            waiter.join(60)
            assert not waiter.is_alive()
            assert "error" not in result, result
            assert result["record"]["status"] == "cancelled"
    finally:
        server.stop()


async def test_events_iterates_the_log_and_the_cli_tails_it(live) -> None:
    world = live.world
    async with AsyncVerdictClient(live.server.url, world.agent_token) as client:
        proposed = [await client.propose(world.agent, pay(f"{n}.00")["action"]) for n in (1, 2)]
    with VerdictClient(live.server.url, world.auditor) as sync:
        whole = list(sync.events(world.tenant, follow=False))
        assert [e["seq"] for e in whole] == list(range(len(whole)))
        verdicts = list(sync.events(world.tenant, types=["verdict.issued"], follow=False))
        assert [e["action_id"] for e in verdicts] == [p["action_id"] for p in proposed]
    async with AsyncVerdictClient(live.server.url, world.agent_token) as client:
        mine = [e async for e in client.events(world.tenant, follow=False)]
        assert {e["action_id"] for e in mine} == {p["action_id"] for p in proposed}
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "events", "tail", "--tenant", world.tenant, "--after", "-1",
         "--no-follow", "--json", "--url", live.server.url, "--type", "action.*"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "VERDICT_TOKEN": world.auditor},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["action_id"] for e in lines] == [p["action_id"] for p in proposed]
    people = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "events", "tail", "--tenant", world.tenant, "--after", "-1",
         "--no-follow", "--url", live.server.url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "VERDICT_TOKEN": world.auditor},
    )  # fmt: skip
    assert out.returncode == 0, people.stderr
    assert "action.proposed" in people.stdout and "decision=ALLOW" in people.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "events", "tail", "--tenant", "globex", "--no-follow",
         "--url", live.server.url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "VERDICT_TOKEN": world.auditor},
    )  # fmt: skip
    assert refused.returncode == 1 and "tenant_not_found" in refused.stderr


def test_wait_for_execution_waits_on_the_events_not_by_polling(backend) -> None:
    from tests.bank import ReferenceBank
    from tests.integration.execution_helpers import FAST_EXECUTOR, configure_bank_rail

    server = GatewayProcess({**backend.env(), **ENV, **FAST_EXECUTOR}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        with ReferenceBank(latency=1.5) as bank:  # the payment takes a while: the client waits

            async def setup():
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
                    world = await make_world(http)
                    await configure_bank_rail(http, world, bank, timeout_seconds=10)
                    return world

            world = asyncio.run(setup())
            with VerdictClient(server.url, world.agent_token) as client:
                paths: list[str] = []
                client._http.event_hooks["request"].append(lambda request: paths.append(request.url.path))
                action_id = client.propose(world.agent, pay("120.00")["action"])["action_id"]
                execution_id = client.execute(action_id)["execution_id"]
                paths.clear()
                done = client.wait_for_execution(execution_id, timeout=60, poll_interval=0.05)
        assert done["status"] == "succeeded" and done["reference"], done
        reads = [p for p in paths if p.startswith("/v1/executions/")]
        waits = [p for p in paths if p.endswith("/events")]
        # two reads to start (the action's id; the state once the position is fixed, so a commit
        # in between is an event), then one after each answer of the long poll (submitted, succeeded)
        assert waits and len(reads) <= len(waits) + 2 and len(waits) <= 3, paths
    finally:
        server.stop()
