"""A live `verdict serve` process with a tenant on examples/policy.yaml (> 5000 escalates to the
CFO; evil-corp and shady-llc are blocked) and a CFO wallet, for the agent integrations' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx
from eth_account import Account

from tests.integration.helpers import bearer, make_world
from tests.integration.process import GatewayProcess

CFO = Account.from_key("0x" + "11" * 32)  # a well-known test key; never use it for anything real


@asynccontextmanager
async def live_gateway(backend) -> AsyncIterator[SimpleNamespace]:
    server = GatewayProcess({**backend.env(), "VERDICT_ACCESS_LOG": "0"}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http)  # examples/policy.yaml: > 5000 escalates to the CFO
            r = await http.post(
                f"/v1/tenants/{world.tenant}/approvers",
                json={"address": CFO.address, "roles": ["cfo"], "name": "Carla CFO"},
                headers=bearer(world.tenant_admin),
            )
            assert r.status_code == 201, r.text
            yield SimpleNamespace(server=server, http=http, world=world)
    finally:
        server.stop()


async def answer(live, action_id: str, approve: bool = True) -> None:
    params = {"role": "cfo", "approve": "true" if approve else "false"}
    r = await live.http.get(f"/v1/actions/{action_id}/approval-request", params=params)
    assert r.status_code == 200, r.text
    signature = "0x" + CFO.sign_typed_data(full_message=r.json()).signature.hex().removeprefix("0x")
    r = await live.http.post(
        f"/v1/actions/{action_id}/{'approve' if approve else 'reject'}",
        json={"approver_role": "cfo", "signature": signature},
    )
    assert r.status_code == 200, r.text
