"""The fault matrix against the reference bank, on both backends: whatever the bank does, each
execution that succeeded has exactly one payment in the bank's ledger, each that failed has none,
and the audit log and the execution's status agree with the bank."""

from __future__ import annotations

import asyncio

import pytest

from tests.bank import ReferenceBank
from tests.integration.execution_helpers import (
    allowed_action,
    configure_bank_rail,
    entries_of,
    execute,
    fast_executor_env,
    wait_for,
)
from tests.integration.helpers import bearer, make_world, verified_log

SUCCEEDED_ENTRIES = ["execution.requested", "execution.submitted", "execution.succeeded"]


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fast_executor_env(monkeypatch)


@pytest.fixture
def bank():
    with ReferenceBank(hang_seconds=1.5) as running:
        yield running


async def run_one(client, bank, inject) -> tuple[dict, list, str, object]:
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    action_id = await allowed_action(client, world)
    inject(bank)
    r = await execute(client, world, action_id)
    assert r.status_code == 202, r.text
    done = await wait_for(client, world, r.json()["execution_id"])
    log = await verified_log(client, world)
    return done, log, action_id, world


def posts(bank: ReferenceBank) -> int:
    return sum(1 for method, path in bank.ledger.requests if method == "POST" and path == "/payments")


def assert_agrees(done: dict, log: list, bank: ReferenceBank, action_id: str) -> None:
    payments = bank.payments_for(action_id)
    if done["status"] == "succeeded":
        assert len(payments) == 1, payments
        assert done["reference"] == payments[0]["id"]
        assert entries_of(log, done["execution_id"]) == SUCCEEDED_ENTRIES
        succeeded = next(e for e in log if e.type == "execution.succeeded")
        assert succeeded.data["reference"] == payments[0]["id"]
    else:
        assert payments == []
        assert entries_of(log, done["execution_id"]) == ["execution.requested", "execution.failed"]


@pytest.mark.parametrize(
    "fault", ["error_after_commit", "timeout_after_commit"], ids=["500_after_commit", "timeout_after_commit"]
)
async def test_committed_payment_with_lost_answer_is_found_not_repeated(client, bank, fault):
    done, log, action_id, _ = await run_one(client, bank, lambda b: b.inject(fault))
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 2
    assert posts(bank) == 1  # asked for the status, found the payment, did not submit again
    assert_agrees(done, log, bank, action_id)


async def test_slow_answer_within_timeout_succeeds_once(client, bank):
    done, log, action_id, _ = await run_one(client, bank, lambda b: b.inject("slow", delay=0.2))
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert_agrees(done, log, bank, action_id)


async def test_duplicate_delivery_makes_one_payment(client, bank):
    done, log, action_id, _ = await run_one(client, bank, lambda b: b.inject("duplicate"))
    assert done["status"] == "succeeded"
    assert_agrees(done, log, bank, action_id)


async def test_refusal_fails_with_the_banks_code_and_no_payment(client, bank):
    done, log, action_id, _ = await run_one(client, bank, lambda b: b.inject("refuse"))
    assert done["status"] == "failed" and done["code"] == "insufficient_funds", done
    assert_agrees(done, log, bank, action_id)
    failed = next(e for e in log if e.type == "execution.failed")
    assert failed.data["code"] == "insufficient_funds"


async def test_failed_execution_frees_the_action_for_another(client, bank):
    first, _, action_id, world = await run_one(client, bank, lambda b: b.inject("refuse"))
    assert first["status"] == "failed"
    r = await execute(client, world, action_id)
    assert r.status_code == 202, r.text
    again = await wait_for(client, world, r.json()["execution_id"])
    assert again["status"] == "succeeded"
    assert len(bank.payments_for(action_id)) == 1


async def test_5xx_without_commit_is_asked_then_submitted_again(client, bank):
    done, log, action_id, _ = await run_one(client, bank, lambda b: b.inject("error", times=2))
    assert done["status"] == "succeeded" and done["attempts"] == 3
    assert posts(bank) == 3
    gets = [path for method, path in bank.ledger.requests if method == "GET"]
    assert len(gets) == 2  # asked before each retry
    assert_agrees(done, log, bank, action_id)


async def test_bank_down_then_up(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    action_id = await allowed_action(client, world)
    bank.stop()
    r = await execute(client, world, action_id)
    execution_id = r.json()["execution_id"]
    for _ in range(200):
        body = (await client.get(f"/v1/executions/{execution_id}", headers=bearer(world.agent_token))).json()
        if body["attempts"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "pending" and body["message"].startswith("rail_unavailable")
    bank.start()
    done = await wait_for(client, world, execution_id)
    assert done["status"] == "succeeded"
    assert_agrees(done, await verified_log(client, world), bank, action_id)


async def test_processing_payment_is_followed_to_success(client, bank):
    bank.processing_polls = 2
    done, log, action_id, _ = await run_one(client, bank, lambda b: None)
    assert done["status"] == "succeeded" and done["submitted_at"] is not None
    assert_agrees(done, log, bank, action_id)


async def test_rollback_reverses_the_payment(client, bank):
    done, _, action_id, world = await run_one(client, bank, lambda b: None)
    execution_id = done["execution_id"]
    r = await client.post(f"/v1/executions/{execution_id}/rollback", json={"reason": "paid the wrong vendor"},
                          headers=bearer(world.agent_token))  # fmt: skip
    assert r.status_code == 403
    r = await client.post(f"/v1/executions/{execution_id}/rollback", json={"reason": "paid the wrong vendor"},
                          headers=bearer(world.tenant_admin))  # fmt: skip
    assert r.status_code == 202, r.text
    assert r.json()["rollback"]["status"] == "requested"
    rolled = await wait_for(client, world, execution_id, ("rolled_back",), token=world.tenant_admin)
    assert (
        rolled["rollback"]["status"] == "succeeded"
        and rolled["rollback"]["reason"] == "paid the wrong vendor"
    )
    payment = bank.payments_for(action_id)[0]
    assert payment["reversed"] is True
    assert len(bank.ledger.reversals) == 1
    log = await verified_log(client, world)
    assert entries_of(log, execution_id)[-2:] == ["execution.rollback_requested", "execution.rolled_back"]
    rolled_back = next(e for e in log if e.type == "execution.rolled_back")
    assert rolled_back.data["reason"] == "paid the wrong vendor" and rolled_back.data["by"].startswith(
        "tenant_admin:"
    )
    r = await client.post(f"/v1/executions/{execution_id}/rollback", json={"reason": "again"},
                          headers=bearer(world.tenant_admin))  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "execution_not_succeeded"
    # a rolled-back execution still counts: the action is not executed again
    r = await execute(client, world, action_id)
    assert r.status_code == 409 and r.json()["code"] == "already_executed"


async def test_rollback_on_a_rail_that_cannot_is_not_reversible(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank, reversible=False)
    action_id = await allowed_action(client, world)
    execution_id = (await execute(client, world, action_id)).json()["execution_id"]
    await wait_for(client, world, execution_id)
    r = await client.post(f"/v1/executions/{execution_id}/rollback", json={"reason": "oops"},
                          headers=bearer(world.tenant_admin))  # fmt: skip
    assert r.status_code == 422 and r.json()["code"] == "not_reversible"
    assert bank.ledger.reversals == {}


async def test_rollback_of_a_failed_execution_is_refused(client, bank):
    done, _, _, world = await run_one(client, bank, lambda b: b.inject("refuse"))
    r = await client.post(f"/v1/executions/{done['execution_id']}/rollback", json={"reason": "x"},
                          headers=bearer(world.tenant_admin))  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "execution_not_succeeded"
