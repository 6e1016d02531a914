"""`verdict mcp serve`: Verdict itself as MCP tools, for agents that ask it explicitly.

Tools (the agent's token is the server's, from `--agent-token-file`):

- `propose_action(action, rationale?)`: the decision (ALLOW with the signed verdict, ESCALATE with
  the action id, or DENY with the reason).
- `get_action(action_id)`: the action's record (status, approvals, verdict once allowed).
- `wait_for_decision(action_id, timeout_seconds)`: waits on the gateway's events up to
  `timeout_seconds` (at most 55) and answers the status; still `pending_approval` after it, call
  again (a wait is a resumable poll, never a call that outlives the host's tool timeout).
- `verify_verdict(signed_verdict, action)`: checks a signed verdict as an executor must.

Refusals by the gateway and an unreachable gateway are tool errors the model can read.
Only `gateway/cli_mcp.py` imports this module.
"""

from __future__ import annotations

from typing import Any

import httpx
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from gateway.client import GatewayError, VerdictInvalid
from gateway.client_async import AsyncVerdictClient

__all__ = ["MAX_WAIT_SECONDS", "build_verdict_server"]

MAX_WAIT_SECONDS = 55.0  # under common hosts' 60 s tool timeouts, and the gateway's long-poll bound
RECORD_FIELDS = ("action_id", "status", "decision", "reason", "approvals_required", "approval_expires_at",
                 "approvals", "signed_verdict", "summary", "action", "created_at", "decided_at")  # fmt: skip


def _trimmed(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in RECORD_FIELDS if key in record}


def _failure(exc: Exception) -> ToolError:
    if isinstance(exc, GatewayError) and exc.status < 500 and exc.status not in (408, 429):
        return ToolError(f"Verdict refused: {exc.code}: {exc.detail}")
    return ToolError(f"The Verdict gateway is unavailable ({type(exc).__name__}); try again later.")


def build_verdict_server(verdict: AsyncVerdictClient, agent_id: str) -> MCPServer:
    """The MCP server whose tools call the gateway as `agent_id` through `verdict`."""
    server = MCPServer(
        "verdict",
        instructions=(
            "Ask Verdict before consequential actions: propose_action, and act only on ALLOW. On"
            " ESCALATE, wait_for_decision (repeat while pending) before acting."
        ),
    )

    @server.tool()
    async def propose_action(action: dict[str, Any], rationale: str | None = None) -> dict[str, Any]:
        """Ask Verdict for a decision on an action ({"type": ..., other fields}). Returns decision
        (ALLOW | ESCALATE | DENY), reason, action_id, status, and the signed verdict on ALLOW."""
        try:
            answer = await verdict.propose(agent_id, action, rationale=rationale)
        except (httpx.HTTPError, GatewayError) as exc:
            raise _failure(exc) from None
        keys = ("action_id", "decision", "status", "reason", "approvals_required", "signed_verdict")
        return {key: answer.get(key) for key in keys}

    @server.tool()
    async def get_action(action_id: str) -> dict[str, Any]:
        """The action's record: status (pending_approval, allowed, rejected, expired, cancelled,
        denied), approvals so far, and the signed verdict once allowed."""
        try:
            return _trimmed(await verdict.get(action_id))
        except (httpx.HTTPError, GatewayError) as exc:
            raise _failure(exc) from None

    @server.tool()
    async def wait_for_decision(action_id: str, timeout_seconds: float = 50.0) -> dict[str, Any]:
        """Wait (up to timeout_seconds, at most 55) for an escalated action to be decided. Returns
        the record; status still pending_approval means: call again to keep waiting."""
        bounded = min(max(timeout_seconds, 0.0), MAX_WAIT_SECONDS)
        try:
            try:
                return _trimmed(await verdict.wait_for_approval(action_id, timeout=bounded))
            except TimeoutError:
                return _trimmed(await verdict.get(action_id))
        except (httpx.HTTPError, GatewayError) as exc:
            raise _failure(exc) from None

    @server.tool()
    async def verify_verdict(signed_verdict: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
        """Check a signed verdict before acting on `action`: signed by one of the gateway's
        published verdict signers, an ALLOW for exactly this action, not expired."""
        try:
            message = await verdict.verify_verdict(signed_verdict, action)
        except VerdictInvalid as exc:
            return {"valid": False, "problem": str(exc)}
        except (httpx.HTTPError, GatewayError) as exc:
            raise _failure(exc) from None
        return {"valid": True, "action_id": message.action_id, "expires_at": message.expires_at}

    return server


async def serve_verdict_tools(
    *, gateway_url: str, agent_id: str, token: str, http: tuple[str, int] | None = None
) -> None:
    """Run `verdict mcp serve` until the host disconnects (stdio) or it is interrupted (HTTP)."""
    async with AsyncVerdictClient(gateway_url, token) as verdict:
        server = build_verdict_server(verdict, agent_id)
        if http is None:
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(host=http[0], port=http[1])
