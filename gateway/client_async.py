"""The asynchronous Python client: `VerdictClient`'s methods, awaited (httpx.AsyncClient).

    from gateway.client import AsyncVerdictClient

    async with AsyncVerdictClient("http://127.0.0.1:8000", token=AGENT_TOKEN) as verdict:
        answer = await verdict.propose("ap-bot", action)
        if answer["decision"] == "ESCALATE":
            record = await verdict.wait_for_approval(answer["action_id"], timeout=3600)
        async for event in verdict.events("acme", types=["verdict.issued"]):
            ...

Errors and checks are the synchronous client's (`GatewayError`, `VerdictInvalid`,
`check_signed_verdict`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from crypto.eip712 import VerdictMessage
from gateway.client import (
    DEFAULT_RETRIES,
    LONG_POLL_SECONDS,
    PENDING,
    RETRYABLE,
    GatewayError,
    _drop_none,
    batch_items,
    check_signed_verdict,
    event_params,
    retry_delay,
)

__all__ = ["AsyncVerdictClient"]


class AsyncVerdictClient:
    """An asynchronous client; safe for concurrent use by the tasks of one event loop."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._signers: dict[str, dict[str, Any]] | None = None
        self.retries = retries  # see VerdictClient

    async def __aenter__(self) -> AsyncVerdictClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        for attempt in range(self.retries):
            delay = retry_delay(response, attempt)
            if delay is None:
                break
            await asyncio.sleep(delay)
            response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": "http_error", "detail": response.text[:200]}
            raise GatewayError(response.status_code, problem if isinstance(problem, dict) else {})
        return response.json()

    # ---- agents

    async def propose(
        self,
        agent_id: str,
        action: dict[str, Any],
        *,
        rationale: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        require_approval: bool = False,
    ) -> dict[str, Any]:
        """See `VerdictClient.propose`."""
        body: dict[str, Any] = {"action": action}
        if require_approval:
            body["require_approval"] = True
        if rationale is not None:
            body["rationale"] = rationale
        if metadata is not None:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._call("POST", f"/v1/agents/{agent_id}/propose", json=body, headers=headers)

    async def propose_many(
        self, agent_id: str, proposals: Iterable[dict[str, Any]], *, explain: bool = True
    ) -> list[dict[str, Any]]:
        """See `VerdictClient.propose_many`."""
        results: list[dict[str, Any]] = []
        for items in batch_items(proposals):
            answer = await self._call(
                "POST",
                f"/v1/agents/{agent_id}/propose/batch",
                json={"actions": items},
                params=None if explain else {"explain": "false"},
            )
            results.extend(answer["results"])
        return results

    async def get(self, action_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/actions/{action_id}")

    async def wait_for_approval(
        self,
        action_id: str,
        timeout: float = 3600.0,
        *,
        poll_interval: float = 1.0,
        max_interval: float = 15.0,
    ) -> dict[str, Any]:
        """See `VerdictClient.wait_for_approval`. Raises TimeoutError, GatewayError."""
        deadline = time.monotonic() + timeout
        record = await self.get(action_id)
        position = max(record["audit_event_ids"], default=-1)
        backoff = poll_interval
        while record["status"] == PENDING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"action {action_id} is still pending approval after {timeout:g} s")
            try:
                page = await self.events_page(
                    record["tenant_id"],
                    after=position,
                    action_id=action_id,
                    wait=min(remaining, LONG_POLL_SECONDS),
                )
                position = page["next_after"]
                record = await self.get(action_id)
                backoff = poll_interval
            except (httpx.TransportError, GatewayError) as exc:
                if isinstance(exc, GatewayError) and exc.status not in RETRYABLE:
                    raise
                await asyncio.sleep(max(0.0, min(backoff, deadline - time.monotonic())))
                backoff = min(backoff * 1.5, max_interval)
        return record

    async def cancel(self, action_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/v1/actions/{action_id}")

    async def rollback_action(self, action_id: str, reason: str) -> dict[str, Any]:
        """See `VerdictClient.rollback_action`."""
        return await self._call("POST", f"/v1/actions/{action_id}/rollback", json={"reason": reason})

    async def operations(self, action_id: str, signer: str | None = None) -> dict[str, Any]:
        """See `VerdictClient.operations`."""
        params = {"signer": signer} if signer is not None else None
        return await self._call("GET", f"/v1/actions/{action_id}/operations", params=params)

    async def verdict(self, action_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/actions/{action_id}/verdict")

    async def verify_verdict(
        self, signed_verdict: dict[str, Any], action: dict[str, Any], *, now: float | None = None
    ) -> VerdictMessage:
        """See `VerdictClient.verify_verdict`. Raises VerdictInvalid."""
        if self._signers is None:
            keys = await self._call("GET", "/v1/keys")
            self._signers = {item["address"].lower(): item for item in keys["verdict_signers"]}
        return check_signed_verdict(signed_verdict, action, self._signers, now=now)

    # ---- events

    async def events_page(
        self,
        tenant: str,
        *,
        after: int = -1,
        types: str | list[str] | None = None,
        action_id: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        wait: float = 0,
    ) -> dict[str, Any]:
        """See `VerdictClient.events_page`."""
        params = event_params(after, types, action_id, agent_id, limit, wait)
        timeout = self._http.timeout.read + wait if self._http.timeout.read is not None else None
        return await self._call("GET", f"/v1/tenants/{tenant}/events", params=params, timeout=timeout)

    async def events(
        self,
        tenant: str,
        *,
        after: int | None = -1,
        types: str | list[str] | None = None,
        action_id: str | None = None,
        agent_id: str | None = None,
        follow: bool = True,
        retry_interval: float = 1.0,
        max_interval: float = 15.0,
    ) -> AsyncIterator[dict[str, Any]]:
        """See `VerdictClient.events`."""
        if after is None:
            after = (await self.events_page(tenant, limit=1))["head"] - 1
        backoff = retry_interval
        while True:
            try:
                page = await self.events_page(
                    tenant, after=after, types=types, action_id=action_id, agent_id=agent_id,
                    limit=1000, wait=LONG_POLL_SECONDS if follow else 0,
                )  # fmt: skip
            except (httpx.TransportError, GatewayError) as exc:
                if isinstance(exc, GatewayError) and exc.status not in RETRYABLE:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 1.5, max_interval)
                continue
            backoff = retry_interval
            for event in page["events"]:
                yield event
            after = page["next_after"]
            if not follow and after >= page["head"] - 1:
                return

    # ---- approvers (no token needed: the signature is the credential)

    async def approval_request(self, action_id: str, role: str, approve: bool = True) -> dict[str, Any]:
        params = {"role": role, "approve": "true" if approve else "false"}
        return await self._call("GET", f"/v1/actions/{action_id}/approval-request", params=params)

    async def approve(
        self,
        action_id: str,
        role: str,
        signature: str,
        *,
        signer: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        body = {"approver_role": role, "signature": signature, "signer": signer, "comment": comment}
        return await self._call("POST", f"/v1/actions/{action_id}/approve", json=_drop_none(body))

    async def reject(
        self,
        action_id: str,
        role: str,
        signature: str,
        *,
        signer: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        body = {"approver_role": role, "signature": signature, "signer": signer, "reason": reason}
        return await self._call("POST", f"/v1/actions/{action_id}/reject", json=_drop_none(body))
