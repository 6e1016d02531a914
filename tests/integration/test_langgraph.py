"""The LangGraph node helper with real LangGraph (a StateGraph and its in-memory checkpointer; no
model), against a real `verdict serve` process on both backends: ALLOW runs the node's side
effect, ESCALATE interrupts until approved and resumes without a second proposal, DENY raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from gateway.client import VerdictClient
from gateway.guard import VerdictDenied
from gateway.integrations.langgraph import require_verdict
from tests.integration.agent_world import answer, live_gateway
from tests.integration.helpers import bearer


@pytest.fixture
async def live(backend) -> AsyncIterator[SimpleNamespace]:
    async with live_gateway(backend) as world:
        yield world


class Invoice(TypedDict, total=False):
    invoice_id: str
    vendor: str
    amount: str
    receipt: str


async def proposals(live) -> int:
    r = await live.http.get("/v1/actions", params={"limit": 100}, headers=bearer(live.world.tenant_admin))
    return len(r.json()["actions"])


async def test_require_verdict_in_a_node(live) -> None:
    ran: list[str] = []
    world = live.world
    with VerdictClient(live.server.url, world.agent_token, timeout=30) as client:

        def pay(state: Invoice) -> Invoice:
            action = {"type": "pay_invoice", "asset": "USDC", "invoice_id": state["invoice_id"],
                      "vendor": state["vendor"], "amount": state["amount"]}  # fmt: skip
            require_verdict(client, agent=world.agent, action=action, call_id="pay")
            ran.append(state["invoice_id"])
            return {"receipt": f"paid {state['invoice_id']}"}

        builder = StateGraph(Invoice)
        builder.add_node("pay", pay)
        builder.add_edge(START, "pay")
        builder.add_edge("pay", END)
        graph = builder.compile(checkpointer=InMemorySaver())
        run = asyncio.to_thread

        def thread(name: str) -> dict:
            return {"configurable": {"thread_id": name}}

        small = {"invoice_id": "inv_1", "vendor": "acme-supplies", "amount": "1200.00"}
        assert (await run(graph.invoke, small, thread("t1")))["receipt"] == "paid inv_1"
        assert ran == ["inv_1"]

        big = {"invoice_id": "inv_3", "vendor": "acme-supplies", "amount": "7800.00"}
        paused = await run(graph.invoke, big, thread("t2"))
        pending = paused["__interrupt__"][0].value
        assert pending["status"] == "pending_approval" and ran == ["inv_1"]
        before = await proposals(live)
        # resumed too early: pauses again, and the re-run proposes nothing new
        again = await run(graph.invoke, Command(resume=True), thread("t2"))
        assert again["__interrupt__"][0].value["verdict_action_id"] == pending["verdict_action_id"]
        assert ran == ["inv_1"] and await proposals(live) == before

        await answer(live, pending["verdict_action_id"])
        done = await run(graph.invoke, Command(resume=True), thread("t2"))
        assert done["receipt"] == "paid inv_3" and ran == ["inv_1", "inv_3"]
        assert await proposals(live) == before

        blocked = {"invoice_id": "inv_4", "vendor": "evil-corp", "amount": "10.00"}
        with pytest.raises(VerdictDenied) as denied:
            await run(graph.invoke, blocked, thread("t3"))
        assert denied.value.reason == "vendor_blocked" and ran == ["inv_1", "inv_3"]
