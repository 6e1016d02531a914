"""Executions across real gateway processes: a SIGKILL between the bank's commit and the gateway's
record, then a restart; and two processes on one database sharing 200 executions."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.bank import API_KEY, ReferenceBank
from tests.integration.execution_helpers import FAST_EXECUTOR
from tests.integration.helpers import World, bearer, pay
from tests.integration.process import GatewayProcess
from tests.integration.test_crash import seed

pytestmark = pytest.mark.slow


async def add_rail(url: str, world: World, bank: ReferenceBank, timeout: float) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.put(
            f"/v1/tenants/{world.tenant}/rails/bank_api",
            json={
                "kind": "bank_api",
                "config": {"base_url": bank.url, "api_key": API_KEY, "timeout_seconds": timeout},
            },
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 200, r.text


async def propose_and_execute(http: httpx.AsyncClient, world: World, amount: str) -> tuple[str, str]:
    r = await http.post(
        f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=bearer(world.agent_token)
    )
    assert r.status_code == 201 and r.json()["decision"] == "ALLOW", r.text
    action_id = r.json()["action_id"]
    r = await http.post(f"/v1/actions/{action_id}/execute", json={}, headers=bearer(world.agent_token))
    assert r.status_code == 202, r.text
    return action_id, r.json()["execution_id"]


async def wait_all(url: str, world: World, execution_ids: list[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while len(done) < len(execution_ids):
            for execution_id in execution_ids:
                if execution_id in done:
                    continue
                body = (
                    await http.get(f"/v1/executions/{execution_id}", headers=bearer(world.auditor))
                ).json()
                if body["status"] in ("succeeded", "failed"):
                    done[execution_id] = body
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(execution_ids) - len(done)} executions did not finish")
            await asyncio.sleep(0.1)
    return done


async def execution_entries(url: str, world: World) -> list[dict]:
    """The execution.* entries of the tenant's log (decoded by the gateway's entries route)."""
    import base64

    from audit import verify_chain

    raw: list[bytes] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while True:
            r = await http.get(f"/v1/tenants/{world.tenant}/audit/entries", params={"start": len(raw)},
                               headers=bearer(world.auditor))  # fmt: skip
            body = r.json()
            raw.extend(base64.b64decode(e["entry"]) for e in body["entries"])
            if len(raw) >= body["size"]:
                break
    return [e for e in verify_chain(raw, tenant=world.tenant) if e.type.startswith("execution.")]


async def test_sigkill_between_bank_commit_and_record_then_restart(backend):
    env = {**backend.env(), **FAST_EXECUTOR}
    with ReferenceBank(hang_seconds=6.0) as bank:
        server = GatewayProcess(env).start()
        try:
            admin = (backend.data_dir / "admin.token").read_text().strip()
            world = await seed(server.url, admin)
            await add_rail(server.url, world, bank, timeout=10.0)
            bank.inject("timeout_after_commit")  # commits, then holds the answer for 6 s
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                action_id, execution_id = await propose_and_execute(http, world, "250.00")
            deadline = time.monotonic() + 10
            while not bank.payments_for(action_id):
                assert time.monotonic() < deadline, "the bank never got the payment"
                await asyncio.sleep(0.01)
            server.kill()  # the bank committed; the gateway had not recorded it
        finally:
            server.stop()
        assert len(bank.payments_for(action_id)) == 1
        restarted = GatewayProcess(env).start()
        try:
            done = await wait_all(restarted.url, world, [execution_id], timeout=30)
            entries = await execution_entries(restarted.url, world)
        finally:
            restarted.stop()
    execution = done[execution_id]
    payments = bank.payments_for(action_id)
    assert execution["status"] == "succeeded" and execution["attempts"] >= 2
    assert len(payments) == 1 and execution["reference"] == payments[0]["id"]
    assert sum(1 for m, p in bank.ledger.requests if m == "POST" and p == "/payments") == 1
    assert [e.type for e in entries] == ["execution.requested", "execution.submitted", "execution.succeeded"]


@pytest.mark.pg
async def test_two_processes_never_execute_one_execution_twice(backend):
    if backend.name != "postgresql":
        pytest.skip("several processes share the work on PostgreSQL (SQLite: one writer)")
    count = 200
    env = {**backend.env(), **FAST_EXECUTOR}
    with ReferenceBank(latency=0.002) as bank:
        first = GatewayProcess(env).start()
        second = GatewayProcess(env).start()
        try:
            admin = (backend.data_dir / "admin.token").read_text().strip()
            world = await seed(first.url, admin)
            await add_rail(first.url, world, bank, timeout=5.0)
            clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in (first, second)]
            semaphore = asyncio.Semaphore(16)

            async def one(n: int) -> tuple[str, str]:
                async with semaphore:
                    return await propose_and_execute(clients[n % 2], world, f"{n + 1}.00")

            started = await asyncio.gather(*(one(n) for n in range(count)))
            for http in clients:
                await http.aclose()
            done = await wait_all(second.url, world, [e for _, e in started], timeout=120)
            entries = await execution_entries(first.url, world)
        finally:
            first.stop()
            second.stop()
    assert all(body["status"] == "succeeded" for body in done.values())
    assert len(bank.ledger.payments) == count
    for action_id, execution_id in started:
        payments = bank.payments_for(action_id)
        assert len(payments) == 1 and payments[0]["idempotency_key"] == execution_id
        assert done[execution_id]["reference"] == payments[0]["id"]
    assert sum(1 for m, p in bank.ledger.requests if m == "POST" and p == "/payments") == count
    submitted = [e for e in entries if e.type == "execution.submitted"]
    assert len(submitted) == count == len({e.data["execution_id"] for e in submitted})
    assert len({e.data["executor"] for e in submitted}) >= 2  # both processes did some of the work
    assert sum(1 for e in entries if e.type == "execution.succeeded") == count
