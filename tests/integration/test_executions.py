"""Executions through the HTTP app on both backends: the happy path, every refusal, idempotency."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from audit.bundle import verify_bundle
from gateway.storage import open_database
from tests.bank import ReferenceBank
from tests.integration.execution_helpers import (
    allowed_action,
    configure_bank_rail,
    entries_of,
    execute,
    fast_executor_env,
    wait_for,
)
from tests.integration.helpers import bearer, make_world, pay, verified_log


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fast_executor_env(monkeypatch)


@pytest.fixture
def bank():
    with ReferenceBank() as running:
        yield running


async def test_execute_pays_once_and_is_audited(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    action_id = await allowed_action(client, world)
    r = await execute(client, world, action_id)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert (
        accepted["status"] == "pending"
        and accepted["rail"] == "bank_api"
        and accepted["action_id"] == action_id
    )
    execution_id = accepted["execution_id"]
    assert execution_id.startswith("exe_")
    done = await wait_for(client, world, execution_id)
    assert done["status"] == "succeeded", done
    payments = bank.payments_for(action_id)
    assert len(payments) == 1
    assert done["reference"] == payments[0]["id"]
    assert payments[0]["amount"] == "120.00" and payments[0]["currency"] == "USDC"
    assert payments[0]["creditor"] == {"name": "acme-supplies"}
    assert payments[0]["idempotency_key"] == execution_id
    log = await verified_log(client, world)
    assert entries_of(log, execution_id) == [
        "execution.requested",
        "execution.submitted",
        "execution.succeeded",
    ]
    requested = next(e for e in log if e.type == "execution.requested")
    assert requested.data["verdict_digest"] == done["verdict_digest"]
    # the action record lists it, and its audit ids cover the execution's entries
    record = (await client.get(f"/v1/actions/{action_id}", headers=bearer(world.agent_token))).json()
    assert [e["execution_id"] for e in record["executions"]] == [execution_id]
    assert set(done["audit_event_ids"]) <= set(record["audit_event_ids"])
    page = (await client.get("/v1/actions", headers=bearer(world.auditor))).json()
    listed = next(a for a in page["actions"] if a["action_id"] == action_id)
    assert [e["execution_id"] for e in listed["executions"]] == [execution_id]


async def test_second_execution_is_refused_with_the_existing_id(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    action_id = await allowed_action(client, world)
    first = (await execute(client, world, action_id)).json()["execution_id"]
    r = await execute(client, world, action_id)
    assert r.status_code == 409 and r.json()["code"] in ("already_executing", "already_executed")
    assert r.json()["execution_id"] == first
    await wait_for(client, world, first)
    r = await execute(client, world, action_id, token=world.tenant_admin)
    assert r.status_code == 409 and r.json()["code"] == "already_executed"
    assert r.json()["execution_id"] == first
    assert len(bank.payments_for(action_id)) == 1


async def test_idempotency_key_replays_the_first_answer(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    await configure_bank_rail(client, world, bank, name="other")
    action_id = await allowed_action(client, world)
    headers = {**bearer(world.agent_token), "Idempotency-Key": "exec-1"}
    first = await client.post(f"/v1/actions/{action_id}/execute", json={"rail": "bank_api"}, headers=headers)
    again = await client.post(f"/v1/actions/{action_id}/execute", json={"rail": "bank_api"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    other = await client.post(f"/v1/actions/{action_id}/execute", json={"rail": "other"}, headers=headers)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    await wait_for(client, world, first.json()["execution_id"])
    assert len(bank.payments_for(action_id)) == 1


async def test_denied_and_pending_actions_are_refused(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    r = await client.post(
        f"/v1/agents/{world.agent}/propose", json=pay(vendor="evil-corp"), headers=bearer(world.agent_token)
    )
    denied = r.json()["action_id"]
    r = await execute(client, world, denied)
    assert (
        r.status_code == 409
        and r.json()["code"] == "action_not_allowed"
        and r.json()["action_status"] == "denied"
    )
    r = await client.post(
        f"/v1/agents/{world.agent}/propose", json=pay("7000.00"), headers=bearer(world.agent_token)
    )
    pending = r.json()["action_id"]
    r = await execute(client, world, pending)
    assert r.status_code == 409 and r.json()["code"] == "approval_pending"
    assert bank.ledger.payments == {}


async def test_no_verdict_without_active_policy_is_refused(client, bank):
    world = await make_world(client, policy="")
    await configure_bank_rail(client, world, bank)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    assert r.json()["decision"] == "DENY"
    r = await execute(client, world, r.json()["action_id"])
    assert r.status_code == 409 and r.json()["code"] == "action_not_allowed"


async def test_expired_verdict_is_refused(client, bank):
    world = await make_world(client, policy=EXAMPLE_SHORT_TTL)
    await configure_bank_rail(client, world, bank)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    action_id, verdict = r.json()["action_id"], r.json()["signed_verdict"]
    expires = verdict["typed_data"]["message"]["expiresAt"]
    await asyncio.sleep(max(0.0, int(expires) - time.time()) + 0.05)
    r = await execute(client, world, action_id)
    assert r.status_code == 409 and r.json()["code"] == "verdict_expired", r.text
    assert r.json()["expired_at"] == verdict["expires_at"]
    assert bank.ledger.payments == {}


async def test_other_tenant_and_other_agent_get_not_found(client, bank):
    world = await make_world(client)
    other = await make_world(client, tenant="globex")
    await configure_bank_rail(client, world, bank)
    action_id = await allowed_action(client, world)
    r = await execute(client, world, action_id, token=other.agent_token)
    assert r.status_code == 404 and r.json()["code"] == "action_not_found"
    r = await execute(client, world, action_id, token=other.tenant_admin)
    assert r.status_code == 404
    execution_id = (await execute(client, world, action_id)).json()["execution_id"]
    r = await client.get(f"/v1/executions/{execution_id}", headers=bearer(other.auditor))
    assert r.status_code == 404 and r.json()["code"] == "execution_not_found"
    await wait_for(client, world, execution_id)


async def test_rail_not_allowed_by_policy_or_unconfigured(client, bank):
    world = await make_world(client, policy=RAILS_POLICY)
    await configure_bank_rail(client, world, bank, name="bank_api")
    await configure_bank_rail(client, world, bank, name="ops_bank")
    action_id = await allowed_action(client, world)
    r = await execute(client, world, action_id, rail="ops_bank")
    assert r.status_code == 422 and r.json()["code"] == "rail_not_allowed"
    assert r.json()["allowed_rails"] == ["bank_api"]
    r = await execute(client, world, action_id, rail="nope")
    assert r.status_code == 422 and r.json()["code"] == "rail_not_allowed"
    # without `rail`, the one rail the policy allows is chosen
    r = await execute(client, world, action_id)
    assert r.status_code == 202 and r.json()["rail"] == "bank_api"
    await wait_for(client, world, r.json()["execution_id"])


async def test_action_naming_its_rail_binds_it(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank, name="bank_api")
    await configure_bank_rail(client, world, bank, name="ops_bank")
    action_id = await allowed_action(client, world, rail="ops_bank")
    r = await execute(client, world, action_id, rail="bank_api")
    assert r.status_code == 422 and r.json()["code"] == "rail_not_allowed"
    r = await execute(client, world, action_id)
    assert r.status_code == 202 and r.json()["rail"] == "ops_bank"
    await wait_for(client, world, r.json()["execution_id"])


async def test_no_rail_configured_and_several_rails(client, bank):
    world = await make_world(client)
    action_id = await allowed_action(client, world)
    r = await execute(client, world, action_id)
    assert r.status_code == 422 and r.json()["code"] == "rail_not_configured"
    await configure_bank_rail(client, world, bank, name="a")
    await configure_bank_rail(client, world, bank, name="b")
    r = await execute(client, world, action_id)
    assert r.status_code == 422 and r.json()["code"] == "rail_required"


EXAMPLE_SHORT_TTL = """\
schema: verdict.policy/v1
default: DENY
verdict_ttl_seconds: 1
rules:
  - id: allow-all
    decision: ALLOW
    match: {}
"""

RAILS_POLICY = """\
schema: verdict.policy/v1
default: DENY
action_types:
  pay_invoice:
    rails: [bank_api]
rules:
  - id: allow-all
    decision: ALLOW
    match: {}
"""


async def test_proof_bundle_of_an_executed_action_verifies_offline(client, bank, backend, tmp_path):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    action_id = await allowed_action(client, world)
    execution_id = (await execute(client, world, action_id)).json()["execution_id"]
    await wait_for(client, world, execution_id)
    r = await client.post(f"/v1/executions/{execution_id}/rollback", json={"reason": "duplicate invoice"},
                          headers=bearer(world.tenant_admin))  # fmt: skip
    assert r.status_code == 202
    await wait_for(client, world, execution_id, ("rolled_back",), token=world.tenant_admin)
    r = await client.get(f"/v1/actions/{action_id}/proof", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    bundle = r.json()
    vkey = (await client.get(f"/v1/tenants/{world.tenant}/keys", headers=bearer(world.auditor))).json()
    vkey = vkey["log"]["vkey"]
    verified = verify_bundle(bundle, vkey)
    assert [e.type for e in verified.entries] == [
        "action.proposed", "verdict.issued", "execution.requested", "execution.submitted", "execution.succeeded",
        "execution.rollback_requested", "execution.rolled_back",
    ]  # fmt: skip
    assert verified.meaning_checked["execution.requested"] == 1
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    env = {**os.environ, **backend.env()}
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify", str(path), "--vkey", vkey],
                         capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("OK  7 entries")


async def test_a_key_revoked_by_another_process_cannot_execute_on_a_cached_authentication(
    client, bank, backend
):
    """Execute reuses a recent authentication, as propose does; the commit re-checks the key, so
    a revocation this process never heard of (another worker's) still refuses, and writes nothing."""
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    first, second = await allowed_action(client, world), await allowed_action(client, world)
    assert (await execute(client, world, first)).status_code == 202  # authenticated, and cached
    other = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await other.open()  # as another process would: this one's cache does not hear of it
    try:
        async with other.transaction() as conn:
            await conn.execute(
                "UPDATE api_keys SET revoked_at = '2026-01-01T00:00:00Z' WHERE agent_id = ? AND revoked_at IS NULL",
                world.agent,
            )
        r = await execute(client, world, second)
        assert (r.status_code, r.json()["code"]) == (401, "invalid_token")
        async with other.read() as conn:
            assert await conn.fetch("SELECT id FROM executions WHERE action_id = ?", second) == []
    finally:
        await other.close()
