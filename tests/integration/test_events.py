"""Events through the HTTP app, both backends: log order, resume, filters, visibility, long poll."""

from __future__ import annotations

import msgspec

from audit.entry import parse_entry
from tests.integration.helpers import bearer, make_world, pay, read_log


async def page(client, world, token: str, **params) -> dict:
    r = await client.get(f"/v1/tenants/{world.tenant}/events", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


async def all_events(client, world, token: str, **params) -> list[dict]:
    """Every event after `after` by pages of `limit` (resuming with next_after)."""
    events, after = [], params.pop("after", -1)
    while True:
        body = await page(client, world, token, after=after, **params)
        events.extend(body["events"])
        if body["next_after"] == after and not body["events"]:
            return events
        after = body["next_after"]
        if after >= body["head"] - 1:
            return events


async def add_agent(client, world, agent_id: str) -> str:
    r = await client.post(
        f"/v1/tenants/{world.tenant}/agents",
        json={"id": agent_id, "name": agent_id},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


async def propose(client, agent: str, token: str, amount: str = "100.00") -> dict:
    r = await client.post(f"/v1/agents/{agent}/propose", json=pay(amount), headers=bearer(token))
    assert r.status_code == 201, r.text
    return r.json()


async def test_events_are_the_log_in_order_with_ids_and_data(client) -> None:
    world = await make_world(client)
    for amount in ("100.00", "7800.00", "50.00"):
        await propose(client, world.agent, world.agent_token, amount)
    entries = [parse_entry(raw) for raw in await read_log(client, world)]
    events = await all_events(client, world, world.auditor)
    assert [e["seq"] for e in events] == [entry.seq for entry in entries] == list(range(len(entries)))
    for event, entry in zip(events, entries, strict=True):
        assert event == {
            "id": f"{world.tenant}:{entry.seq}", "seq": entry.seq, "tenant": world.tenant, "type": entry.type,
            "time": entry.time, "action_id": entry.action_id, "data": entry.data,
        }  # fmt: skip


async def test_resuming_from_any_seq_loses_and_repeats_nothing(client) -> None:
    world = await make_world(client)
    for _ in range(6):
        await propose(client, world.agent, world.agent_token)
    whole = [e["seq"] for e in await all_events(client, world, world.tenant_admin)]
    for after in range(-1, len(whole)):
        for limit in (1, 3, 1000):
            resumed = [
                e["seq"]
                for e in await all_events(client, world, world.tenant_admin, after=after, limit=limit)
            ]
            assert resumed == whole[after + 1 :], (after, limit)


async def test_an_agent_sees_only_its_own_actions_and_no_approval_signatures(client) -> None:
    world = await make_world(client)
    other_token = await add_agent(client, world, "other-bot")
    mine = await propose(client, world.agent, world.agent_token, "7800.00")
    theirs = await propose(client, "other-bot", other_token)
    seen = await all_events(client, world, world.agent_token)
    assert {e["action_id"] for e in seen} == {mine["action_id"]}
    assert [e["type"] for e in seen] == ["action.proposed"]
    other_seen = await all_events(client, world, other_token)
    assert {e["action_id"] for e in other_seen} == {theirs["action_id"]}
    # asking for another agent's events or action gives nothing
    assert await all_events(client, world, world.agent_token, agent_id="other-bot") == []
    assert await all_events(client, world, world.agent_token, action_id=theirs["action_id"]) == []


async def test_readers_filter_by_type_action_and_agent(client) -> None:
    world = await make_world(client)
    other_token = await add_agent(client, world, "other-bot")
    mine = await propose(client, world.agent, world.agent_token)
    theirs = await propose(client, "other-bot", other_token)
    by_type = await all_events(client, world, world.auditor, types="verdict.issued")
    assert [e["action_id"] for e in by_type] == [mine["action_id"], theirs["action_id"]]
    prefix = await all_events(client, world, world.auditor, types="action.*,policy.published")
    assert {e["type"] for e in prefix} == {"action.proposed", "policy.published"}
    of_action = await all_events(client, world, world.auditor, action_id=theirs["action_id"])
    assert [e["type"] for e in of_action] == ["action.proposed", "verdict.issued"]
    of_agent = await all_events(client, world, world.auditor, agent_id="other-bot")
    assert {e["action_id"] for e in of_agent} == {theirs["action_id"]}


async def test_another_tenants_events_answer_404(client) -> None:
    world = await make_world(client)
    other = await make_world(client, tenant="globex")
    for token in (other.tenant_admin, other.auditor, other.agent_token):
        r = await client.get(f"/v1/tenants/{world.tenant}/events", headers=bearer(token))
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "tenant_not_found"
        r = await client.get(f"/v1/tenants/{world.tenant}/events/stream", headers=bearer(token))
        assert r.status_code == 404, r.text
    # and none of globex's events shows in acme's
    events = await all_events(client, world, world.auditor)
    assert {e["tenant"] for e in events} == {world.tenant}


async def test_bad_parameters_are_problems(client) -> None:
    world = await make_world(client)
    for params, code in (
        ({"types": "Not A Type"}, "invalid_filter"),
        ({"after": -2}, None),
        ({"limit": 0}, None),
        ({"wait": 56}, None),
    ):
        r = await client.get(
            f"/v1/tenants/{world.tenant}/events", params=params, headers=bearer(world.auditor)
        )
        assert r.status_code == 400, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if code:
            assert r.json()["code"] == code
    r = await client.get(f"/v1/tenants/{world.tenant}/events")
    assert r.status_code == 401


async def test_long_poll_with_nothing_new_answers_empty_at_its_deadline(client) -> None:
    world = await make_world(client)
    head = (await page(client, world, world.auditor))["head"]
    body = await page(client, world, world.auditor, after=head - 1, wait=0.3)
    assert body["events"] == [] and body["next_after"] == head - 1
    assert msgspec.json.encode(body)
