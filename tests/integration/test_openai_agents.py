"""The OpenAI Agents SDK adapter with the real SDK and its ScriptedModel (no network model),
against a real `verdict serve` process on both backends: an allowed tool runs at once, an
escalated one becomes an interruption that Verdict resolves (then the SDK runs it once), a denied
one is rejected with a message for the model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

from gateway.client_async import AsyncVerdictClient
from gateway.integrations.openai_agents import VerdictApprovals
from tests.integration.agent_world import answer, live_gateway

POLICY_NOTE = "examples/policy.yaml: pay_invoice over 5000 escalates to the CFO; evil-corp is blocked"
NO_TRACING = RunConfig(tracing_disabled=True)


@pytest.fixture
async def live(backend) -> AsyncIterator[SimpleNamespace]:
    async with live_gateway(backend) as world:
        yield world


def pay(invoice_id: str, vendor: str, amount: str) -> dict:
    return {"invoice_id": invoice_id, "vendor": vendor, "amount": amount}


async def test_needs_approval_and_resolve(live) -> None:
    ran: list[str] = []
    world = live.world
    async with AsyncVerdictClient(live.server.url, world.agent_token, timeout=30) as client:
        approvals = VerdictApprovals(client, agent=world.agent)

        @function_tool(needs_approval=approvals.needs_approval("pay_invoice"))
        def pay_invoice(invoice_id: str, vendor: str, amount: str) -> str:
            """Pay an invoice."""
            ran.append(invoice_id)
            return f"paid {invoice_id}"

        model = ScriptedModel(
            [
                [function_call("pay_invoice", pay("inv_1", "acme-supplies", "1200.00"), call_id="c1")],
                [assistant_message("paid the small one")],
                [function_call("pay_invoice", pay("inv_3", "acme-supplies", "7800.00"), call_id="c2")],
                [assistant_message("paid after approval")],
                [function_call("pay_invoice", pay("inv_4", "evil-corp", "10.00"), call_id="c3")],
                [assistant_message("could not pay")],
            ]
        )
        agent = Agent(name="ap", instructions=POLICY_NOTE, model=model, tools=[pay_invoice])

        result = await Runner.run(agent, "pay inv_1", run_config=NO_TRACING)  # ALLOW: runs at once
        assert result.final_output == "paid the small one" and ran == ["inv_1"]

        result = await Runner.run(agent, "pay inv_3", run_config=NO_TRACING)  # ESCALATE: paused
        assert len(result.interruptions) == 1 and ran == ["inv_1"]
        state = result.to_state()
        pending = await approvals.resolve(state)
        assert len(pending) == 1 and ran == ["inv_1"]
        await answer(live, pending[0])
        assert await approvals.resolve(state) == []  # the same call id: the same action, now allowed
        result = await Runner.run(agent, state, run_config=NO_TRACING)
        assert result.final_output == "paid after approval" and ran == ["inv_1", "inv_3"]

        result = await Runner.run(agent, "pay inv_4", run_config=NO_TRACING)  # DENY: rejected
        assert len(result.interruptions) == 1
        state = result.to_state()
        assert await approvals.resolve(state) == []
        result = await Runner.run(agent, state, run_config=NO_TRACING)
        assert result.final_output == "could not pay" and ran == ["inv_1", "inv_3"]
        assert "vendor_blocked" in str(model.last_call)  # the model was told why
        model.assert_complete()
