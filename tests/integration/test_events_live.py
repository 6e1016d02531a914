"""Events from a real `verdict serve` process: long poll, Server-Sent Events (httpx streaming),
WebSocket (`websockets`), and a commit in one process reaching a subscriber on another."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
import websockets

from tests.integration.helpers import bearer, make_world, pay
from tests.integration.process import GatewayProcess


@pytest.fixture
async def live(backend) -> AsyncIterator[SimpleNamespace]:
    server = GatewayProcess({**backend.env(), "VERDICT_ACCESS_LOG": "0"}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http)
            yield SimpleNamespace(server=server, http=http, world=world, backend=backend)
    finally:
        server.stop()


async def propose(http: httpx.AsyncClient, world, amount: str = "100.00") -> dict:
    r = await http.post(
        f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=bearer(world.agent_token)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def head_of(http: httpx.AsyncClient, world) -> int:
    r = await http.get(
        f"/v1/tenants/{world.tenant}/events", params={"limit": 1}, headers=bearer(world.auditor)
    )
    assert r.status_code == 200, r.text
    return r.json()["head"]


async def sse_messages(response: httpx.Response) -> AsyncIterator[dict]:
    """Parse `text/event-stream`: each message as {"id", "event", "data", "comments"}."""
    message: dict = {"comments": []}
    async for line in response.aiter_lines():
        if line == "":
            if len(message) > 1 or message["comments"]:
                yield message
            message = {"comments": []}
        elif line.startswith(":"):
            message["comments"].append(line[1:].strip())
        else:
            field, _, value = line.partition(":")
            message[field] = value.removeprefix(" ")


async def read_events(response: httpx.Response, count: int) -> list[dict]:
    events = []
    async for message in sse_messages(response):
        if "data" in message and message.get("event") is None:
            event = json.loads(message["data"])
            assert int(message["id"]) == event["seq"]
            events.append(event)
            if len(events) == count:
                return events
    raise AssertionError("the stream ended")


async def test_long_poll_answers_when_an_event_commits(live) -> None:
    http, world = live.http, live.world
    after = await head_of(http, world) - 1
    params = {"after": after, "wait": 30, "types": "verdict.issued"}
    waiting = asyncio.ensure_future(
        http.get(f"/v1/tenants/{world.tenant}/events", params=params, headers=bearer(world.agent_token))
    )
    await asyncio.sleep(0.5)
    assert not waiting.done()
    proposed = await propose(http, world)
    r = await asyncio.wait_for(waiting, 10)
    body = r.json()
    assert [(e["type"], e["action_id"]) for e in body["events"]] == [
        ("verdict.issued", proposed["action_id"])
    ]


async def test_sse_streams_in_log_order_and_resumes_from_last_event_id(live) -> None:
    http, world = live.http, live.world
    url = f"/v1/tenants/{world.tenant}/events/stream"
    start = await head_of(http, world) - 1
    seen: list[dict] = []
    async with http.stream("GET", url, params={"after": start}, headers=bearer(world.auditor)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for n in range(3):
            await propose(http, world, f"{n + 1}.00")
        seen = await read_events(response, 6)  # each ALLOW: action.proposed, verdict.issued
    assert [e["seq"] for e in seen] == list(range(start + 1, start + 7))
    assert [e["type"] for e in seen] == ["action.proposed", "verdict.issued"] * 3
    for n in range(2):
        await propose(http, world, f"{n + 10}.00")
    # a browser reconnects with Last-Event-ID, which wins over the URL's `after`
    resume_from = seen[2]["seq"]
    headers = {**bearer(world.auditor), "Last-Event-ID": str(resume_from)}
    async with http.stream("GET", url, params={"after": start}, headers=headers) as response:
        resumed = await read_events(response, 7)
    assert [e["seq"] for e in resumed] == list(range(resume_from + 1, resume_from + 8))
    assert resumed[:3] == seen[3:]


async def test_sse_filters_agents_and_moves_the_resume_position_with_heartbeats(live) -> None:
    http, world = live.http, live.world
    url = f"/v1/tenants/{world.tenant}/events/stream"
    params = {"types": "verdict.issued", "heartbeat": 1}
    async with http.stream("GET", url, params=params, headers=bearer(world.agent_token)) as response:
        proposed = await propose(http, world)
        messages = sse_messages(response)
        event = None
        async for message in messages:
            if "data" in message:
                event = json.loads(message["data"])
                break
        assert event is not None and event["type"] == "verdict.issued"
        assert event["action_id"] == proposed["action_id"]
        # a tenant entry the agent may not see: a heartbeat moves its Last-Event-ID past it
        r = await http.put(
            f"/v1/tenants/{world.tenant}/rate-limits",
            json={"propose_per_minute": 999},
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 200
        async for message in messages:
            if "id" in message and int(message["id"]) > event["seq"]:
                assert "data" not in message and "heartbeat" in message["comments"]
                break


async def test_sse_refuses_a_bad_last_event_id_before_streaming(live) -> None:
    http, world = live.http, live.world
    headers = {**bearer(world.auditor), "Last-Event-ID": "not-a-seq"}
    r = await http.get(f"/v1/tenants/{world.tenant}/events/stream", headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "invalid_range"


def ws_url(live, world) -> str:
    return live.server.url.replace("http://", "ws://") + f"/v1/tenants/{world.tenant}/events/ws"


async def receive(ws, kind: str) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message
        assert message["type"] == "heartbeat", message


async def test_websocket_subscribes_receives_and_waits_for_acknowledgements(live) -> None:
    http, world = live.http, live.world
    start = await head_of(http, world) - 1
    for n in range(3):
        await propose(http, world, f"{n + 1}.00")
    headers = bearer(world.auditor)
    async with websockets.connect(ws_url(live, world), additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "subscribe", "after": start, "window": 2}))
        assert await receive(ws, "subscribed") == {"type": "subscribed", "after": start}
        first = [(await receive(ws, "event"))["event"] for _ in range(2)]
        assert [e["seq"] for e in first] == [start + 1, start + 2]
        with pytest.raises(TimeoutError):  # two unacknowledged: the window is full
            await receive_event_within(ws, 1.0)
        await ws.send(json.dumps({"type": "ack", "seq": first[-1]["seq"]}))
        rest = [(await receive(ws, "event"))["event"] for _ in range(2)]
        assert [e["seq"] for e in rest] == [start + 3, start + 4]
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws, "pong") == {"type": "pong"}
        # subscribing again changes filters and position
        await ws.send(json.dumps({"type": "subscribe", "after": start, "types": ["verdict.issued"]}))
        await receive(ws, "subscribed")
        verdicts = [(await receive(ws, "event"))["event"] for _ in range(3)]
        assert {e["type"] for e in verdicts} == {"verdict.issued"}
        assert [e["seq"] for e in verdicts] == sorted(e["seq"] for e in verdicts)
        await ws.send(json.dumps({"type": "subscribe", "types": ["Bad Type"]}))
        error = await receive(ws, "error")
        assert error["code"] == "invalid_filter"


async def receive_event_within(ws, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if message["type"] == "event":
            return message


async def test_websocket_takes_the_token_as_a_subprotocol_and_refuses_others_as_the_table_says(live) -> None:
    world = live.world
    protocols = ["verdict.events.v1", f"bearer.{world.agent_token}"]
    async with websockets.connect(ws_url(live, world), subprotocols=protocols) as ws:
        assert ws.subprotocol == "verdict.events.v1"
        await ws.send(json.dumps({"type": "subscribe"}))
        await receive(ws, "subscribed")
        proposed = await propose(live.http, world)
        event = (await receive(ws, "event"))["event"]
        assert event["action_id"] == proposed["action_id"]
    other = await make_world(live.http, tenant="globex")
    refusals = [
        ("vk_wrong", "invalid_token", 4401),
        (other.auditor, "tenant_not_found", 4404),  # another tenant's credential: as if none existed
        (world.admin_token, "forbidden_role", 4403),
    ]
    for token, code, close_code in refusals:
        async with websockets.connect(ws_url(live, world), additional_headers=bearer(token)) as ws:
            error = await receive(ws, "error")
            assert error["code"] == code
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == close_code


@pytest.mark.slow
async def test_a_commit_in_one_process_reaches_an_sse_subscriber_on_another_within_a_second(backend) -> None:
    if backend.name != "postgresql":
        pytest.skip("several gateway processes on one database: PostgreSQL")
    # polls every 30 s: only the NOTIFY can deliver within a second
    env = {**backend.env(), "VERDICT_ACCESS_LOG": "0", "VERDICT_EVENTS_POLL_SECONDS": "30"}
    writer = GatewayProcess(env).start()
    reader = GatewayProcess(env).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        async with (
            httpx.AsyncClient(base_url=writer.url, timeout=30) as a,
            httpx.AsyncClient(base_url=reader.url, timeout=30) as b,
        ):
            a.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(a)
            url = f"/v1/tenants/{world.tenant}/events/stream"
            async with b.stream(
                "GET", url, params={"types": "verdict.issued"}, headers=bearer(world.auditor)
            ) as response:
                messages = sse_messages(response)
                await anext(messages)  # subscribed: the reader's hub follows the tenant
                delays = []
                for n in range(5):
                    committed = time.monotonic()
                    proposed = await propose(a, world, f"{n + 1}.00")
                    async for message in messages:
                        if "data" in message:
                            break
                    delays.append(time.monotonic() - committed)
                    assert json.loads(message["data"])["action_id"] == proposed["action_id"]
            assert max(delays) < 1.0, delays
    finally:
        writer.stop()
        reader.stop()


async def test_the_console_page_hears_of_new_entries_through_its_own_event_stream(live) -> None:
    """/console/live: a console session's SSE of "the log grew" (what the pages reload on)."""
    http, world = live.http, live.world
    r = await http.get("/console/live")
    assert r.status_code == 401 and r.json()["code"] == "console_session_required"
    origin = {"Origin": str(http.base_url).rstrip("/")}
    r = await http.post("/console/sign-in/token", json={"token": world.auditor}, headers=origin)
    assert r.status_code == 200, r.text
    start = await head_of(http, world) - 1
    async with http.stream("GET", "/console/live", params={"after": start}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "default-src 'none'" in response.headers["content-security-policy"]
        proposed = await propose(http, world)
        async for message in sse_messages(response):
            if message.get("event") == "changed":
                assert json.loads(message["data"])["seq"] == int(message["id"]) > start
                break
    assert proposed["status"] == "allowed"
