"""Batch proposals (`POST /v1/agents/{agent_id}/propose/batch`), on both backends: each action is
answered exactly as if proposed alone (ids, decisions, verdicts, audit entries, rate limits,
limits, idempotency keys), all in one group commit."""

from __future__ import annotations

from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data

from gateway.ratelimit import WINDOW_SECONDS
from tests.integration.helpers import bearer, make_world, pay, verified_log
from tests.integration.test_policy_features import LIMIT_ONLY
from tests.integration.test_rate_limits import fresh_window, set_limit


async def batch(client: Any, world: Any, items: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
    return await client.post(
        f"/v1/agents/{world.agent}/propose/batch",
        json={"actions": items},
        headers=kwargs.pop("headers", None) or bearer(world.agent_token),
        **kwargs,
    )


def committed_batches(client: Any, tenant: str) -> int:
    writer = client.app_state.ledger.writer(tenant)
    return sum(writer.batches.values()) if writer is not None else 0


async def test_each_action_is_answered_as_if_proposed_alone_in_one_group_commit(client):
    world = await make_world(client)
    await verified_log(client, world)
    before = committed_batches(client, world.tenant)
    items = [
        pay("1200.00"),
        pay("7800.00"),
        pay("10.00", vendor="evil-corp"),
        {"action": {"type": "pay_invoice", "amount": 12.5, "vendor": "acme"}},  # a float: refused
        {**pay("42.00"), "rationale": "monthly", "metadata": {"ticket": "T-1"}},
    ]
    r = await batch(client, world, items)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 201, 201, 422, 201]
    assert committed_batches(client, world.tenant) == before + 1  # one transaction for all four
    answers = [x["result"] for x in results if x["status"] == 201]
    assert [a["decision"] for a in answers] == ["ALLOW", "ESCALATE", "DENY", "ALLOW"]
    assert len({a["action_id"] for a in answers}) == 4
    refused = results[3]["problem"]
    assert (refused["code"], refused["status"], refused["field"]) == (
        "float_not_allowed",
        422,
        "action.amount",
    )
    # each verdict signs its own action, recoverable with eth-account
    for answer in (answers[0], answers[3]):
        verdict = answer["signed_verdict"]
        assert verdict["typed_data"]["message"]["actionId"] == answer["action_id"]
        typed = encode_typed_data(full_message=verdict["typed_data"])
        assert Account.recover_message(typed, signature=verdict["signature"]) == verdict["signer"]
    assert answers[1]["signed_verdict"] is None and answers[1]["approvals_required"]
    # the records and the log are those of four single proposals
    for answer in answers:
        got = (await client.get(f"/v1/actions/{answer['action_id']}", headers=bearer(world.auditor))).json()
        assert (got["decision"], got["audit_event_ids"][0]) == (answer["decision"], answer["audit_event_id"])
    record = (
        await client.get(f"/v1/actions/{answers[3]['action_id']}", headers=bearer(world.auditor))
    ).json()
    assert (record["rationale"], record["metadata"]) == ("monthly", {"ticket": "T-1"})
    entries = await verified_log(client, world)
    proposed = [e for e in entries if e.type == "action.proposed"]
    assert [e.action_id for e in proposed] == [a["action_id"] for a in answers]
    assert sum(e.type == "verdict.issued" for e in entries) == 2


async def test_rate_limits_count_each_action(client):
    world = await make_world(client)
    assert (await set_limit(client, world, 3, agent=world.agent)).status_code == 200
    await fresh_window()
    r = await batch(client, world, [pay(f"{i}.00") for i in range(1, 6)])
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 201, 201, 429, 429]
    assert results[3]["problem"]["code"] == "rate_limited"
    assert 1 <= results[3]["retry_after"] <= WINDOW_SECONDS
    entries = await verified_log(client, world)
    assert sum(e.type == "action.proposed" for e in entries) == 3
    # the limit is the same one single proposals spend
    single = await client.post(
        f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token)
    )
    assert single.status_code == 429


async def test_limits_count_earlier_actions_of_the_same_batch(client):
    world = await make_world(client, policy=LIMIT_ONLY)  # 20,000 a day per agent
    r = await batch(client, world, [pay("8000.00"), pay("8000.00"), pay("8000.00"), pay("4000.00")])
    answers = [x["result"] for x in r.json()["results"]]
    assert [a["decision"] for a in answers] == ["ALLOW", "ALLOW", "DENY", "ALLOW"]
    assert [a["limits"][0]["total"] for a in answers[:2]] == ["0", "8000.00"]
    # the third, over the limit once the first two count, was decided again after the batch's
    # commit (as a concurrent single proposal is): its total counts every allowed one before it
    assert answers[2]["limits"][0]["tripped"] and answers[2]["limits"][0]["total"] == "20000.00"
    entries = await verified_log(client, world)
    assert sum(e.type == "action.proposed" for e in entries) == 4


async def test_idempotency_keys_per_action(client):
    world = await make_world(client)
    items = [
        {**pay("100.00"), "idempotency_key": "a"},
        {**pay("200.00"), "idempotency_key": "b"},
        {**pay("100.00"), "idempotency_key": "a"},  # the same request again in the same batch
        {**pay("300.00"), "idempotency_key": "a"},  # another request with a used key
        pay("400.00"),
    ]
    first = (await batch(client, world, items)).json()["results"]
    assert [x["status"] for x in first] == [201, 201, 201, 409, 201]
    assert first[2]["replayed"] and first[2]["result"] == first[0]["result"]
    assert "replayed" not in first[0]
    assert first[3]["problem"]["code"] == "idempotency_conflict"
    # the whole batch again: the keyed actions replay, the one without a key is new
    again = (await batch(client, world, items)).json()["results"]
    assert [x["status"] for x in again] == [201, 201, 201, 409, 201]
    assert again[0]["replayed"] and again[0]["result"] == first[0]["result"]
    assert again[1]["result"] == first[1]["result"]
    assert again[4]["result"]["action_id"] != first[4]["result"]["action_id"]
    # a batch action and a single proposal with the same key and body are the same request
    single = await client.post(
        f"/v1/agents/{world.agent}/propose",
        json=pay("200.00"),
        headers={**bearer(world.agent_token), "Idempotency-Key": "b"},
    )
    assert single.headers["idempotent-replayed"] == "true" and single.json() == first[1]["result"]
    entries = await verified_log(client, world)
    assert sum(e.type == "action.proposed" for e in entries) == 4  # a, b and two without a key


async def test_bad_batches_are_refused_whole_and_create_nothing(client):
    world = await make_world(client)
    size = len(await verified_log(client, world))
    cases = [
        ([], {}, 400, "invalid_batch"),
        ([pay()] * 101, {}, 400, "invalid_batch"),
        ([pay()], {"Idempotency-Key": "k"}, 400, "idempotency_key_per_action"),
        ([{**pay(), "callback_url": "https://example.com/hook"}], {}, 400, "unknown_field"),
        ([{**pay(), "idempotency_key": "has space"}], {}, 200, None),
    ]
    for items, extra, status, code in cases:
        r = await batch(client, world, items, headers={**bearer(world.agent_token), **extra})
        assert r.status_code == status, r.text
        if code is not None:
            assert r.json()["code"] == code
            assert r.headers["content-type"].startswith("application/problem+json")
        else:
            assert r.json()["results"][0]["problem"]["code"] == "invalid_idempotency_key"
    # another agent's batch route looks like no agent at all
    r = await client.post("/v1/agents/someone-else/propose/batch", json={"actions": [pay()]},
                          headers=bearer(world.agent_token))  # fmt: skip
    assert (r.status_code, r.json()["code"]) == (404, "agent_not_found")
    assert len(await verified_log(client, world)) == size
