"""`verdict mcp serve` (Verdict itself as MCP tools) driven by the mcp SDK's client over stdio,
against a real `verdict serve` process on both backends."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from mcp import Client, StdioServerParameters

from tests.integration.agent_world import answer, live_gateway

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def live(backend) -> AsyncIterator[SimpleNamespace]:
    async with live_gateway(backend) as world:
        yield world


def data(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


async def test_verdict_as_mcp_tools(live, tmp_path) -> None:
    world = live.world
    token_file = tmp_path / "agent.token"
    token_file.write_text(f"{world.agent} {world.agent_token}")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway.cli", "mcp", "serve", "--url", live.server.url, "--agent-token-file", str(token_file)],
        cwd=str(ROOT), env={**os.environ},
    )  # fmt: skip
    async with Client(params, read_timeout_seconds=90) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"propose_action", "get_action", "wait_for_decision", "verify_verdict"}

        small = {"type": "pay_invoice", "invoice_id": "inv_1", "amount": "1200.00", "asset": "USDC",
                 "vendor": "acme-supplies"}  # fmt: skip
        allowed = data(await client.call_tool("propose_action", {"action": small}))
        assert allowed["decision"] == "ALLOW" and allowed["signed_verdict"]["signature"]
        check = data(
            await client.call_tool(
                "verify_verdict", {"signed_verdict": allowed["signed_verdict"], "action": small}
            )
        )
        assert check == {"valid": True, "action_id": allowed["action_id"], "expires_at": check["expires_at"]}
        other = {**small, "amount": "1300.00"}
        check = data(
            await client.call_tool(
                "verify_verdict", {"signed_verdict": allowed["signed_verdict"], "action": other}
            )
        )
        assert check["valid"] is False and "another action" in check["problem"]

        big = {**small, "invoice_id": "inv_2", "amount": "7800.00"}
        escalated = data(await client.call_tool("propose_action", {"action": big, "rationale": "monthly"}))
        assert escalated["decision"] == "ESCALATE" and escalated["signed_verdict"] is None
        action_id = escalated["action_id"]
        waited = data(
            await client.call_tool("wait_for_decision", {"action_id": action_id, "timeout_seconds": 0.2})
        )
        assert waited["status"] == "pending_approval"  # bounded: answers while still pending
        await answer(live, action_id)
        waited = data(
            await client.call_tool("wait_for_decision", {"action_id": action_id, "timeout_seconds": 999})
        )
        assert waited["status"] == "allowed" and waited["signed_verdict"]["signature"]
        assert data(await client.call_tool("get_action", {"action_id": action_id}))["status"] == "allowed"

        denied = data(await client.call_tool("propose_action", {"action": {**small, "vendor": "evil-corp"}}))
        assert denied["decision"] == "DENY" and denied["reason"] == "vendor_blocked"
        refused = await client.call_tool("propose_action", {"action": {**small, "amount": "-5"}})
        assert refused.is_error and "invalid_amount" in refused.content[0].text
        missing = await client.call_tool("get_action", {"action_id": "act_nope"})
        assert missing.is_error and "Verdict refused" in missing.content[0].text

        live.server.stop()  # the gateway down: a tool error, not a crash
        down = await client.call_tool("propose_action", {"action": small})
        assert down.is_error and "unavailable" in down.content[0].text
