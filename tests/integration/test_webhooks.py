"""Standard Webhooks delivery, end to end on both backends: a real receiver on a loopback port
checks every signature with the `standardwebhooks` package; retries, Retry-After, 410, giving
up, secret rotation, replay, callbacks, and which targets are refused (SSRF)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.helpers import World, bearer, make_world, pay, read_log
from tests.integration.receiver import Answer, Receiver, wait_until

FAST_RETRIES = {
    "VERDICT_WEBHOOK_ALLOW_PRIVATE": "1",
    "VERDICT_WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2",
    "VERDICT_WEBHOOK_TIMEOUT": "1",
    "VERDICT_WEBHOOK_LEASE_SECONDS": "3",
}


async def _client(backend, monkeypatch, env: dict[str, str]) -> AsyncIterator:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app(backend.settings(checkpoint_interval=0))
    async with AsyncTestClient(app=app) as test_client:
        test_client.app_state = app.state
        yield test_client


@pytest.fixture
async def client(backend, monkeypatch) -> AsyncIterator:
    """A gateway that may deliver to loopback receivers, with retries 0.2 s apart."""
    async for test_client in _client(backend, monkeypatch, FAST_RETRIES):
        yield test_client


@pytest.fixture
async def strict_client(backend, monkeypatch) -> AsyncIterator:
    """A gateway as deployed: private and loopback targets refused."""
    monkeypatch.delenv("VERDICT_WEBHOOK_ALLOW_PRIVATE", raising=False)
    async for test_client in _client(backend, monkeypatch, {}):
        yield test_client


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


async def create_hook(client, world: World, url: str, **fields) -> dict:
    r = await client.post(
        f"/v1/tenants/{world.tenant}/webhooks",
        json={"url": url, **fields},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_") and body["id"].startswith("wh_")
    return body


async def propose(client, world: World, amount: str = "100.00", **fields) -> dict:
    r = await client.post(
        f"/v1/agents/{world.agent}/propose", json={**pay(amount), **fields}, headers=bearer(world.agent_token)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def log_types(client, world: World) -> list[str]:
    return [json.loads(raw)["type"] for raw in await read_log(client, world)]


async def deliveries(client, world: World, hook_id: str, at_least: int = 0) -> list[dict]:
    """The webhook's attempts log, newest first, once it holds `at_least` attempts (the receiver
    has a delivery a moment before its record commits with the new position)."""
    for _ in range(200):
        r = await client.get(
            f"/v1/tenants/{world.tenant}/webhooks/{hook_id}/deliveries", headers=bearer(world.auditor)
        )
        assert r.status_code == 200, r.text
        if len(r.json()["deliveries"]) >= at_least:
            break
        await asyncio.sleep(0.05)
    return r.json()["deliveries"]


async def test_events_are_delivered_in_log_order_signed_per_the_standard(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url)
    for i in range(5):
        await propose(client, world, f"{100 + i}.00")
    log = await read_log(client, world)
    created_at = len(log) - 1 - 5 * 2  # each ALLOW: action.proposed + verdict.issued
    expected = list(range(created_at + 1, len(log)))
    await wait_until(lambda: len(receiver.delivered()) >= len(expected), what="every event")
    got = receiver.delivered()
    assert [r.seq for r in got] == expected
    for r in got:
        assert r.verifies_with(hook["secret"])
        assert not r.verifies_with("whsec_" + "A" * 43 + "=")
        event = r.event
        assert r.headers["webhook-id"] == event["id"] == f"{world.tenant}:{event['seq']}"
        assert set(event) == {"id", "seq", "tenant", "type", "time", "action_id", "data"}
        assert r.headers["content-type"] == "application/json"
        assert r.path == "/hooks/verdict?source=test"
    assert [r.event["type"] for r in got[:2]] == ["action.proposed", "verdict.issued"]
    attempts = await deliveries(client, world, hook["id"], len(expected))
    assert len(attempts) == len(expected)
    assert {(a["status_code"], a["attempt"], a["error"]) for a in attempts} == {(204, 1, None)}
    assert all(a["latency_ms"] >= 0 for a in attempts)
    r = await client.get(f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}", headers=bearer(world.auditor))
    assert r.json()["delivered_through"] == expected[-1] and "secret" not in r.json()


async def test_a_failing_receiver_gets_the_event_again_and_later_events_wait(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    receiver.script = [Answer(500), Answer(500)]
    first = await propose(client, world)
    second = await propose(client, world, "200.00")
    await wait_until(lambda: len(receiver.delivered()) >= 2, what="both events")
    seen = [(r.event["action_id"], r.status) for r in receiver.all()]
    assert seen == [
        (first["action_id"], 500),
        (first["action_id"], 500),
        (first["action_id"], 204),
        (second["action_id"], 204),
    ]
    ids = {r.headers["webhook-id"] for r in receiver.all()[:3]}
    assert len(ids) == 1  # the same webhook-id each time: the receiver's idempotency key
    attempts = await deliveries(client, world, hook["id"], 4)  # newest first
    assert [(a["attempt"], a["status_code"]) for a in reversed(attempts)] == [
        (1, 500),
        (2, 500),
        (3, 204),
        (1, 204),
    ]
    assert attempts[-1]["error"] == "HTTP 500"


async def test_a_timeout_is_a_failed_attempt_and_is_retried(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    receiver.script = [Answer(204, delay=2.5)]  # the gateway waits 1 s
    await propose(client, world)
    await wait_until(lambda: len(receiver.all()) >= 2, what="the retry")
    attempts = await deliveries(client, world, hook["id"], 1)
    first = attempts[-1]
    assert first["status_code"] is None and first["error"].startswith("timeout")
    assert 900 <= first["latency_ms"] < 2400
    await wait_until(lambda: len(receiver.delivered()) >= 1, what="the retry's success")
    assert receiver.all()[0].headers["webhook-id"] == receiver.delivered()[0].headers["webhook-id"]


async def test_retry_after_is_honoured(client, receiver):
    world = await make_world(client)
    await create_hook(client, world, receiver.url, types=["action.proposed"])
    receiver.script = [Answer(503, {"Retry-After": "2"})]
    await propose(client, world)
    await wait_until(lambda: len(receiver.delivered()) >= 1, what="the second attempt")
    first, second = receiver.all()[:2]
    assert second.at - first.at >= 1.9  # not the schedule's 0.2 s


async def test_410_disables_the_webhook_and_enabling_resumes_at_the_same_event(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    receiver.script = [Answer(410)]
    first = await propose(client, world)
    url = f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}"
    await wait_until(lambda: len(receiver.all()) >= 1)

    async def disabled() -> dict:
        for _ in range(100):
            body = (await client.get(url, headers=bearer(world.auditor))).json()
            if not body["enabled"]:
                return body
            await asyncio.sleep(0.05)
        raise AssertionError("not disabled")

    body = await disabled()
    assert body["disabled_reason"] == "gone"
    assert "webhook.disabled" in await log_types(client, world)
    await propose(client, world, "300.00")
    await asyncio.sleep(1.0)
    assert len(receiver.all()) == 1  # nothing more is sent to a disabled webhook
    r = await client.patch(url, json={"enabled": True}, headers=bearer(world.tenant_admin))
    assert r.status_code == 200 and r.json()["enabled"] and r.json()["disabled_reason"] is None
    await wait_until(lambda: len(receiver.delivered()) >= 2, what="delivery after enabling")
    assert receiver.delivered()[0].event["action_id"] == first["action_id"]


async def test_a_webhook_failing_every_scheduled_attempt_is_disabled_and_the_log_says_so(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    receiver.default = Answer(500)
    await propose(client, world)
    await wait_until(lambda: len(receiver.all()) >= 5, what="five attempts (the schedule has four delays)")

    async def is_disabled() -> bool:
        r = await client.get(
            f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}", headers=bearer(world.auditor)
        )
        return not r.json()["enabled"]

    for _ in range(100):
        if await is_disabled():
            break
        await asyncio.sleep(0.05)
    r = await client.get(f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}", headers=bearer(world.auditor))
    assert r.json()["disabled_reason"] == "failing" and r.json()["failed_attempts"] == 5
    assert len(receiver.all()) == 5
    assert (await log_types(client, world)).count("webhook.disabled") == 1


async def test_both_secrets_sign_during_a_rotation(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    await propose(client, world)
    await wait_until(lambda: len(receiver.delivered()) >= 1)
    r = await client.post(
        f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}/rotate-secret", headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"] != hook["secret"] and rotated["previous_secret_until"]
    await propose(client, world, "200.00")
    await wait_until(lambda: len(receiver.delivered()) >= 2)
    before, after = receiver.delivered()[:2]
    assert before.verifies_with(hook["secret"]) and not before.verifies_with(rotated["secret"])
    assert after.verifies_with(hook["secret"]) and after.verifies_with(rotated["secret"])
    assert len(after.headers["webhook-signature"].split(" ")) == 2
    assert "webhook.secret_rotated" in await log_types(client, world)


async def test_replay_delivers_again_from_a_position_in_order(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url)
    for i in range(3):
        await propose(client, world, f"{10 + i}.00")
    await wait_until(lambda: len(receiver.delivered()) >= 6)
    first_round = [r.seq for r in receiver.delivered()]
    start = first_round[1]
    r = await client.post(
        f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}/replay",
        json={"after": start},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 200, r.text
    size = len(await read_log(client, world))  # the replay's own entry is an event too
    await wait_until(lambda: receiver.delivered()[-1].seq == size - 1, what="the replay")
    again = [r.seq for r in receiver.delivered()[6:]]
    assert again == list(range(start + 1, size))
    r = await client.post(
        f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}/replay",
        json={"after": size + 5},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_range"


async def test_callback_url_gets_that_actions_events_signed_with_the_tenant_secret(client, receiver):
    world = await make_world(client)
    other = await propose(client, world, "1.00")
    escalated = await propose(client, world, "7000.00", callback_url=receiver.url)
    assert escalated["decision"] == "ESCALATE"
    allowed = await propose(client, world, "2.00", callback_url=receiver.url)
    await wait_until(lambda: len(receiver.delivered()) >= 3, what="the callbacks")
    await asyncio.sleep(0.5)
    got = receiver.delivered()
    by_action = {}
    for r in got:
        by_action.setdefault(r.event["action_id"], []).append(r.event["type"])
    assert other["action_id"] not in by_action
    assert by_action[escalated["action_id"]] == ["action.proposed"]
    assert by_action[allowed["action_id"]] == ["action.proposed", "verdict.issued"]
    url = f"/v1/tenants/{world.tenant}/webhook-secret"
    r = await client.post(url, headers=bearer(world.tenant_admin))
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    assert all(r.verifies_with(secret) for r in got)
    r = await client.post(url, headers=bearer(world.tenant_admin))
    assert r.status_code == 409 and r.json()["code"] == "tenant_secret_revealed"
    r = await client.get(f"/v1/tenants/{world.tenant}/webhooks?kind=callback", headers=bearer(world.auditor))
    assert {h["action_id"] for h in r.json()["webhooks"]} == {escalated["action_id"], allowed["action_id"]}


async def test_a_repeated_proposal_registers_its_callback_once(client, receiver):
    world = await make_world(client)
    headers = {**bearer(world.agent_token), "Idempotency-Key": "k-1"}
    body = {**pay("3.00"), "callback_url": receiver.url}
    first = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=headers)
    again = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    await wait_until(lambda: len(receiver.delivered()) >= 2)
    await asyncio.sleep(0.5)
    assert len(receiver.delivered()) == 2
    assert (await log_types(client, world)).count("webhook.created") == 1


REFUSED = [
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://100.64.0.1/hook",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_private_and_loopback_targets_are_refused(strict_client, url):
    world = await make_world(strict_client)
    r = await strict_client.post(
        f"/v1/tenants/{world.tenant}/webhooks", json={"url": url}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "webhook_target_refused"


async def test_plain_http_and_odd_urls_are_refused(strict_client):
    world = await make_world(strict_client)
    for url in ["http://example.com/hook", "ftp://example.com/", "https://user:pw@example.com/", "/relative"]:
        r = await strict_client.post(
            f"/v1/tenants/{world.tenant}/webhooks", json={"url": url}, headers=bearer(world.tenant_admin)
        )
        assert r.status_code == 422 and r.json()["code"] == "invalid_webhook_url", url


async def test_a_private_callback_url_is_refused_before_anything_is_decided(strict_client):
    world = await make_world(strict_client)
    before = len(await read_log(strict_client, world))
    r = await strict_client.post(
        f"/v1/agents/{world.agent}/propose",
        json={**pay(), "callback_url": "https://127.0.0.1:8443/cb"},
        headers=bearer(world.agent_token),
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_target_refused"
    assert len(await read_log(strict_client, world)) == before


async def test_the_target_is_checked_again_at_delivery_time(client, receiver):
    """DNS rebinding: a name that was public when the webhook was made may point inside later.
    Here the operator's setting changes instead; the effect is the same check at send time."""
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    worker = client.app_state.deliveries
    worker.sender.allow_private = False
    await propose(client, world)
    for _ in range(100):
        attempts = await deliveries(client, world, hook["id"])
        if attempts:
            break
        await asyncio.sleep(0.05)
    assert attempts[-1]["status_code"] is None
    # (a plain-http URL is itself refused once private targets are: the scheme check comes first)
    assert attempts[-1]["error"].startswith(("webhook_target_refused", "invalid_webhook_url"))
    assert receiver.all() == []
    worker.sender.allow_private = True
    await wait_until(lambda: len(receiver.delivered()) == 1, what="delivery once allowed")


async def test_webhook_routes_are_for_tenant_admins_and_stay_in_their_tenant(client, receiver):
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url)
    base = f"/v1/tenants/{world.tenant}/webhooks"
    r = await client.post(base, json={"url": receiver.url}, headers=bearer(world.auditor))
    assert r.status_code == 403
    r = await client.post(base, json={"url": receiver.url}, headers=bearer(world.agent_token))
    assert r.status_code in (403, 404)
    other = await make_world(client, tenant="globex")
    r = await client.get(f"{base}/{hook['id']}", headers=bearer(other.tenant_admin))
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"
    r = await client.get(f"/v1/tenants/globex/webhooks/{hook['id']}", headers=bearer(other.tenant_admin))
    assert r.status_code == 404 and r.json()["code"] == "webhook_not_found"
    r = await client.patch(
        f"{base}/{hook['id']}", json={"types": ["nope!"]}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_event_types"
    r = await client.delete(f"{base}/{hook['id']}", headers=bearer(world.tenant_admin))
    assert r.status_code == 204
    r = await client.get(f"{base}/{hook['id']}", headers=bearer(world.tenant_admin))
    assert r.status_code == 404
    types = await log_types(client, world)
    assert types.count("webhook.created") == 1 and types.count("webhook.deleted") == 1


async def test_redirects_are_not_followed_and_a_new_url_takes_over(client, receiver):
    world = await make_world(client)
    with Receiver() as elsewhere:
        receiver.default = Answer(307, {"Location": elsewhere.url})
        hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
        proposed = await propose(client, world)
        await wait_until(lambda: len(receiver.all()) >= 2, what="two refused attempts")
        attempts = await deliveries(client, world, hook["id"], 2)
        assert {(a["status_code"], a["error"]) for a in attempts} == {(307, "HTTP 307")}
        assert elsewhere.all() == []
        r = await client.patch(
            f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}",
            json={"url": elsewhere.url},
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 200 and r.json()["url"] == elsewhere.url
        await wait_until(lambda: len(elsewhere.delivered()) >= 1, what="delivery to the new URL")
        assert elsewhere.delivered()[0].event["action_id"] == proposed["action_id"]
        assert elsewhere.delivered()[0].verifies_with(hook["secret"])


async def test_a_replay_during_a_delivery_takes_effect_at_once(client, receiver):
    """The worker delivering when the position moves gives the webhook back at once (not when
    its lease runs out), and delivery goes on from the replayed position."""
    world = await make_world(client)
    hook = await create_hook(client, world, receiver.url, types=["action.proposed"])
    receiver.script = [Answer(204, delay=0.5)]
    first = await propose(client, world)
    await wait_until(lambda: len(receiver.started) >= 1, what="the slow delivery")
    r = await client.post(
        f"/v1/tenants/{world.tenant}/webhooks/{hook['id']}/replay",
        json={"after": hook["delivered_through"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 200, r.text
    began = asyncio.get_running_loop().time()
    await wait_until(lambda: len(receiver.delivered()) >= 2, timeout=10, what="the replayed delivery")
    assert asyncio.get_running_loop().time() - began < 2.5  # the lease is 3 s
    assert [d.event["action_id"] for d in receiver.delivered()[:2]] == [first["action_id"]] * 2
