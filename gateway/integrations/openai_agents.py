"""Verdict for the OpenAI Agents SDK (`pip install 'verdict-gateway[openai-agents]'`).

    from agents import Agent, Runner, function_tool
    from gateway.integrations.openai_agents import VerdictApprovals

    approvals = VerdictApprovals(AsyncVerdictClient(URL, token=AGENT_TOKEN), agent="ap-bot")

    @function_tool(needs_approval=approvals.needs_approval("pay_invoice"))
    def pay_invoice(invoice_id: str, vendor: str, amount: str) -> str: ...

    result = await Runner.run(agent, "pay invoice inv_1")
    while result.interruptions:                       # Verdict escalated (or denied) a call
        state = result.to_state()
        pending = await approvals.resolve(state, wait=timedelta(minutes=5))
        if pending:                                   # still waiting: keep `state` (to_json) and
            break                                     # resume later with the same call
        result = await Runner.run(agent, state)

`needs_approval` proposes `{"type": <tool name>, **arguments}` with the
Idempotency-Key `openai-agents-<call_id>`: ALLOW runs the tool at once; DENY and ESCALATE pause the
run as an interruption. `resolve` answers each interruption from Verdict (the same key returns the
same action, also after a restart): DENY or a rejected, expired or cancelled approval rejects it
with a message for the model; an approved one approves it, and the SDK runs the tool once on
resume; one still pending after `wait` is left as it is and returned.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from agents import RunContextWrapper, RunState, ToolApprovalItem

from gateway.client import VerdictInvalid
from gateway.client_async import AsyncVerdictClient

__all__ = ["VerdictApprovals"]


class VerdictApprovals:
    """Builds `needs_approval` callables and resolves the interruptions they cause."""

    def __init__(self, client: AsyncVerdictClient, *, agent: str, key_prefix: str = "openai-agents") -> None:
        self.client, self.agent, self.key_prefix = client, agent, key_prefix

    def action(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The action proposed for a call of `tool`: its arguments with `type` the tool's name (as
        `@guarded` does), so a policy for `pay_invoice` reads `action.amount`."""
        return {**arguments, "type": tool}

    async def propose(self, tool: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
        """Raises GatewayError, httpx.HTTPError (the SDK then fails the run: fail closed)."""
        key = f"{self.key_prefix}-{call_id}"
        return await self.client.propose(self.agent, self.action(tool, arguments), idempotency_key=key)

    def needs_approval(
        self, tool: str
    ) -> Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]:
        """The `needs_approval` callable for `tool`: False (run now) only for a verified ALLOW."""

        async def decide(context: RunContextWrapper[Any], arguments: dict[str, Any], call_id: str) -> bool:
            answer = await self.propose(tool, arguments, call_id)
            if answer["decision"] != "ALLOW":
                return True
            try:
                await self.client.verify_verdict(answer["signed_verdict"], self.action(tool, arguments))
            except VerdictInvalid:
                return True  # resolve() will not approve it either
            return False

        return decide

    async def resolve(self, state: RunState[Any, Any], *, wait: timedelta | None = None) -> list[str]:
        """Approve or reject each interruption of `state` as Verdict decided. Returns the action
        ids still pending approval after `wait` (their interruptions are left unanswered).
        Raises GatewayError, httpx.HTTPError."""
        pending: list[str] = []
        for item in state.get_interruptions():
            outcome, detail = await self.outcome(item, wait)
            if outcome == "approve":
                state.approve(item)
            elif outcome == "reject":
                state.reject(item, rejection_message=detail)
            else:
                pending.append(detail)
        return pending

    async def outcome(self, item: ToolApprovalItem, wait: timedelta | None) -> tuple[str, str]:
        """("approve" | "reject" | "pending", message or action id) for one interruption."""
        tool, call_id = item.name or "", item.call_id or ""
        arguments = json.loads(item.arguments or "{}")
        answer = await self.propose(tool, arguments, call_id)
        action_id = answer["action_id"]
        if answer["decision"] == "DENY":
            return "reject", f"Verdict denied this call ({answer['reason']}); it was not made."
        signed = answer["signed_verdict"]
        if answer["decision"] == "ESCALATE":
            try:
                timeout = wait.total_seconds() if wait is not None else 0.0
                record = await self.client.wait_for_approval(action_id, timeout=timeout)
            except TimeoutError:
                return "pending", action_id
            if record["status"] != "allowed":
                return "reject", f"Approval of this call ended as {record['status']} ({record['reason']})."
            signed = record["signed_verdict"]
        try:
            await self.client.verify_verdict(signed, self.action(tool, arguments))
        except VerdictInvalid as exc:
            return "reject", f"The verdict for this call does not hold ({exc}); it was not made."
        return "approve", action_id
