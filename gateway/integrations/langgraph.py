"""Verdict for LangGraph nodes (`pip install 'verdict-gateway[langgraph]'`).

    from gateway.integrations.langgraph import require_verdict

    def pay(state: State) -> dict:
        require_verdict(verdict, agent="ap-bot", call_id="pay",
                        action={"type": "pay_invoice", "amount": state["amount"], ...})
        return {"receipt": bank.pay(...)}            # runs only after an ALLOW

ALLOW returns the checked signed verdict. DENY, or an approval that ends rejected, expired or
cancelled, raises `VerdictDenied`. ESCALATE calls `interrupt()` with
`{"verdict_action_id", "status": "pending_approval", "reason"}`: the graph pauses (its state in
the checkpointer, so the pause survives a restart); after the approvers answer, resume it with
`graph.invoke(Command(resume=True), config)`. LangGraph re-runs the node from its start, and the
proposal carries the Idempotency-Key `langgraph-<thread id>-<call_id>`, so the re-run gets the
same action rather than a second proposal. Resumed while still pending, the node pauses again.

Put the side effect after `require_verdict` in the same node, and nothing with side effects
before it: a node's code before an `interrupt()` runs again on every resume.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config
from langgraph.types import interrupt

from gateway.client import PENDING, VerdictClient
from gateway.client_async import AsyncVerdictClient
from gateway.guard import VerdictDenied

__all__ = ["arequire_verdict", "require_verdict"]


def idempotency_key(call_id: str) -> str:
    """`langgraph-<thread id>-<call_id>`. Raises ValueError outside a run with a thread id."""
    thread = (get_config().get("configurable") or {}).get("thread_id")
    if thread is None:
        raise ValueError("require_verdict needs a checkpointed run: pass configurable.thread_id")
    return f"langgraph-{thread}-{call_id}"


def _pause(answer: dict[str, Any]) -> None:
    interrupt({"verdict_action_id": answer["action_id"], "status": PENDING, "reason": answer["reason"]})


def _denied(answer: dict[str, Any], record: dict[str, Any] | None) -> VerdictDenied:
    if record is None:
        return VerdictDenied(answer["action_id"], answer["reason"])
    return VerdictDenied(answer["action_id"], record["reason"], record["status"])


def require_verdict(
    client: VerdictClient, *, agent: str, action: dict[str, Any], call_id: str
) -> dict[str, Any]:
    """Inside a node: the signed verdict of `action`, or an interrupt while approval is pending.
    Raises VerdictDenied, VerdictInvalid, GatewayError, httpx.HTTPError, ValueError (no thread)."""
    answer = client.propose(agent, action, idempotency_key=idempotency_key(call_id))
    if answer["decision"] == "DENY":
        raise _denied(answer, None)
    signed = answer["signed_verdict"]
    if answer["decision"] == "ESCALATE":
        record = client.get(answer["action_id"])
        while record["status"] == PENDING:
            _pause(answer)  # raises the first time; returns on the resumed re-run
            record = client.get(answer["action_id"])
        if record["status"] != "allowed":
            raise _denied(answer, record)
        signed = record["signed_verdict"]
    client.verify_verdict(signed, action)
    return signed


async def arequire_verdict(
    client: AsyncVerdictClient, *, agent: str, action: dict[str, Any], call_id: str
) -> dict[str, Any]:
    """`require_verdict` for async nodes. Raises as `require_verdict`."""
    answer = await client.propose(agent, action, idempotency_key=idempotency_key(call_id))
    if answer["decision"] == "DENY":
        raise _denied(answer, None)
    signed = answer["signed_verdict"]
    if answer["decision"] == "ESCALATE":
        record = await client.get(answer["action_id"])
        while record["status"] == PENDING:
            _pause(answer)
            record = await client.get(answer["action_id"])
        if record["status"] != "allowed":
            raise _denied(answer, record)
        signed = record["signed_verdict"]
    await client.verify_verdict(signed, action)
    return signed
