"""Helpers for execution tests: a fast executor, a rail on the reference bank, an allowed action."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.bank import API_KEY, ReferenceBank
from tests.integration.helpers import World, bearer, pay

FAST_EXECUTOR = {
    "VERDICT_RAIL_ALLOW_PRIVATE": "1",
    "VERDICT_EXECUTION_POLL_SECONDS": "0.02",
    "VERDICT_EXECUTION_BACKOFF_SECONDS": "0.05",
    "VERDICT_EXECUTION_MAX_BACKOFF_SECONDS": "0.2",
    "VERDICT_EXECUTION_PROCESSING_POLL_SECONDS": "0.05",
    "VERDICT_EXECUTION_LEASE_SECONDS": "3",
}


def fast_executor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_EXECUTOR.items():
        monkeypatch.setenv(name, value)


async def configure_bank_rail(
    client: Any, world: World, bank: ReferenceBank, name: str = "bank_api", **config: Any
) -> dict[str, Any]:
    body = {
        "kind": "bank_api",
        "config": {"base_url": bank.url, "api_key": API_KEY, "timeout_seconds": 0.5, **config},
    }
    r = await client.put(
        f"/v1/tenants/{world.tenant}/rails/{name}", json=body, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 200, r.text
    return r.json()


async def allowed_action(client: Any, world: World, amount: str = "120.00", **extra: Any) -> str:
    r = await client.post(
        f"/v1/agents/{world.agent}/propose", json=pay(amount, **extra), headers=bearer(world.agent_token)
    )
    assert r.status_code == 201, r.text
    assert r.json()["decision"] == "ALLOW", r.text
    return r.json()["action_id"]


async def execute(client: Any, world: World, action_id: str, token: str | None = None, **body: Any) -> Any:
    return await client.post(
        f"/v1/actions/{action_id}/execute", json=body, headers=bearer(token or world.agent_token)
    )


async def wait_for(
    client: Any, world: World, execution_id: str, statuses: tuple[str, ...] = ("succeeded", "failed"),
    timeout: float = 20.0, token: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/v1/executions/{execution_id}", headers=bearer(token or world.agent_token))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in statuses and (body.get("rollback") or {}).get("status") != "requested":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {execution_id} still {body['status']}: {body}")
        await asyncio.sleep(0.05)


def entries_of(log: list[Any], execution_id: str) -> list[str]:
    """The types of the log entries about one execution, in log order."""
    return [
        e.type for e in log if e.type.startswith("execution.") and e.data.get("execution_id") == execution_id
    ]
