"""An agent follows its executions on the events route: each `execution.*` entry shows it what
`GET /v1/executions/{id}` shows it (not which worker ran it); rail configuration stays invisible."""

from __future__ import annotations

from tests.bank import ReferenceBank
from tests.integration.execution_helpers import (
    allowed_action,
    configure_bank_rail,
    execute,
    fast_executor_env,
    wait_for,
)
from tests.integration.helpers import bearer, make_world


async def test_an_agent_sees_its_executions_events_as_the_execution_shows_them(backend, monkeypatch):
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    fast_executor_env(monkeypatch)
    app = create_app(backend.settings())
    with ReferenceBank() as bank:
        async with AsyncTestClient(app=app) as client:
            client.app_state = app.state
            world = await make_world(client)
            await configure_bank_rail(client, world, bank)
            action_id = await allowed_action(client, world)
            r = await execute(client, world, action_id)
            assert r.status_code == 202, r.text
            execution = await wait_for(client, world, r.json()["execution_id"])
            assert execution["status"] == "succeeded", execution
            r = await client.get(
                f"/v1/tenants/{world.tenant}/events",
                params={"limit": 1000},
                headers=bearer(world.agent_token),
            )
            assert r.status_code == 200, r.text
            events = r.json()["events"]
    types = [e["type"] for e in events]
    assert not [t for t in types if t.startswith("rail.")]
    by_type = {e["type"]: e["data"] for e in events if e["type"].startswith("execution.")}
    assert list(by_type) == ["execution.requested", "execution.submitted", "execution.succeeded"]
    requested = by_type["execution.requested"]
    assert requested["execution_id"] == execution["execution_id"]
    assert (requested["rail"], requested["rail_kind"]) == (execution["rail"], execution["rail_kind"])
    assert requested["verdict_digest"] == execution["verdict_digest"]
    assert by_type["execution.submitted"]["reference"] == execution["reference"]
    assert "executor" not in by_type["execution.submitted"]
    assert by_type["execution.succeeded"]["result"] == execution["result"]
