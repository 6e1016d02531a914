"""`@guarded` against a real `verdict serve` process, on both backends: sync and async functions,
ALLOW / DENY / ESCALATE, waiting for the approvers, and repeats with an idempotency key that run
the function once. An approver answers with a real key through the approve route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import pytest

from gateway.client import AsyncVerdictClient, VerdictClient
from gateway.guard import ApprovalPending, CallInProgress, VerdictDenied, guarded
from tests.integration.agent_world import answer, live_gateway
from tests.integration.helpers import bearer


@pytest.fixture
async def live(backend) -> AsyncIterator[SimpleNamespace]:
    async with live_gateway(backend) as world:
        yield world


def pay_action(invoice_id: str, vendor: str, amount: str) -> dict:
    return {"invoice_id": invoice_id, "vendor": vendor, "amount": amount, "asset": "USDC"}


async def test_a_guarded_sync_function(live) -> None:
    ran: list[str] = []
    world = live.world
    with VerdictClient(live.server.url, world.agent_token, timeout=30) as client:
        options = dict(agent=world.agent, action_type="pay_invoice", build=pay_action,
                       idempotency_key=lambda invoice_id, **_: f"pay-{invoice_id}")  # fmt: skip

        @guarded(client, **options)
        def pay(invoice_id: str, vendor: str, amount: str) -> str:
            ran.append(invoice_id)
            return f"paid {invoice_id}"

        @guarded(client, **options, wait=timedelta(seconds=120))
        def pay_when_approved(invoice_id: str, vendor: str, amount: str) -> str:
            ran.append(invoice_id)
            return f"paid {invoice_id} after approval"

        call = asyncio.to_thread
        assert await call(pay, "inv_1", "acme-supplies", "1200.00") == "paid inv_1"  # ALLOW
        assert await call(pay, "inv_1", "acme-supplies", "1200.00") == "paid inv_1"  # a repeat
        assert ran == ["inv_1"]
        with pytest.raises(VerdictDenied) as denied:
            await call(pay, "inv_2", "evil-corp", "10.00")
        assert denied.value.reason == "vendor_blocked" and ran == ["inv_1"]

        with pytest.raises(ApprovalPending) as pending:
            await call(pay, "inv_3", "acme-supplies", "7800.00")
        action_id = pending.value.action_id
        with pytest.raises(ApprovalPending) as again:  # the same key: the same action, still pending
            await call(pay, "inv_3", "acme-supplies", "7800.00")
        assert again.value.action_id == action_id and ran == ["inv_1"]

        # waiting: the approval lands while (or before) the guard waits on the events
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(pay_when_approved, "inv_3", "acme-supplies", "7800.00")
            await answer(live, action_id)
            assert await asyncio.wrap_future(waiting) == "paid inv_3 after approval"
        assert ran == ["inv_1", "inv_3"]
        # a repeat after it ran: the first result, not a second run
        assert await call(pay, "inv_3", "acme-supplies", "7800.00") == "paid inv_3 after approval"
        assert ran == ["inv_1", "inv_3"]

        # rejected: denied, with the status
        with pytest.raises(ApprovalPending) as pending:
            await call(pay, "inv_4", "acme-supplies", "9000.00")
        await answer(live, pending.value.action_id, approve=False)
        with pytest.raises(VerdictDenied) as rejected:
            await call(pay, "inv_4", "acme-supplies", "9000.00")
        assert rejected.value.status == "rejected" and ran == ["inv_1", "inv_3"]

        # a bounded wait that ends while still pending
        @guarded(client, **options, wait=timedelta(seconds=0.5))
        def pay_soon(invoice_id: str, vendor: str, amount: str) -> str:
            ran.append(invoice_id)
            return "never"

        with pytest.raises(ApprovalPending):
            await call(pay_soon, "inv_5", "acme-supplies", "7000.00")
        assert ran == ["inv_1", "inv_3"]


async def test_a_guarded_async_function_runs_once_under_concurrent_repeats(live) -> None:
    ran: list[str] = []
    gate = asyncio.Event()
    world = live.world
    async with AsyncVerdictClient(live.server.url, world.agent_token, timeout=30) as client:

        @guarded(client, agent=world.agent, action_type="pay_invoice", build=pay_action,
                 idempotency_key=lambda invoice_id, **_: f"apay-{invoice_id}", wait=timedelta(seconds=120))  # fmt: skip
        async def pay(invoice_id: str, vendor: str, amount: str) -> str:
            ran.append(invoice_id)
            await gate.wait()
            return f"paid {invoice_id}"

        gate.set()
        assert await pay("inv_1", "acme-supplies", "1200.00") == "paid inv_1"
        with pytest.raises(VerdictDenied):
            await pay("inv_2", "shady-llc", "10.00")
        assert ran == ["inv_1"]

        gate.clear()
        first = asyncio.ensure_future(pay("inv_3", "acme-supplies", "7800.00"))
        record = None
        while record is None:  # the proposal is committed before the guard waits
            r = await live.http.get(
                "/v1/actions", params={"status": "pending_approval"}, headers=bearer(world.tenant_admin)
            )
            items = r.json()["actions"]
            record = items[0] if items else None
            if record is None:
                await asyncio.sleep(0.05)
        await answer(live, record["action_id"])
        while not ran[1:]:
            await asyncio.sleep(0.05)  # the first call is now inside the function
        with pytest.raises(CallInProgress):
            await pay("inv_3", "acme-supplies", "7800.00")
        gate.set()
        assert await first == "paid inv_3"
        assert await pay("inv_3", "acme-supplies", "7800.00") == "paid inv_3"
        assert ran == ["inv_1", "inv_3"]


def test_the_client_must_match_the_function() -> None:
    client = VerdictClient("http://127.0.0.1:9", "t")
    with pytest.raises(TypeError, match="AsyncVerdictClient"):

        @guarded(client, agent="a", action_type="t")
        async def f() -> None: ...

    client.close()
