"""Bodies built to crash a parser get a problem answer, and the gateway stays up."""

from __future__ import annotations

from tests.integration.helpers import bearer, make_world, pay


async def test_deeply_nested_body_is_refused_not_fatal(client):
    # py_ecc (via eth-account) raises Python's recursion limit to 100000 at import; with that
    # limit, decoding ~50k nested arrays overflowed the C stack and killed the process.
    world = await make_world(client)
    depth = 30_000
    body = b'{"action": {"type": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}}"
    r = await client.post(
        f"/v1/agents/{world.agent}/propose",
        content=body,
        headers={**bearer(world.agent_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "nesting_too_deep")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    assert r.status_code == 201


async def test_body_over_the_limit_is_413(client):
    world = await make_world(client)
    body = pay(note="x" * 70_000)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=bearer(world.agent_token))
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")


async def test_duplicate_keys_are_refused_and_nothing_is_created(client):
    world = await make_world(client)
    entries_before = (
        await client.get(f"/v1/tenants/{world.tenant}/audit/entries", headers=bearer(world.auditor))
    ).json()["size"]
    headers = {**bearer(world.agent_token), "Content-Type": "application/json"}
    bodies = [
        b'{"action": {"type": "pay_invoice", "amount": "10.00", "amount": "99999.00", "vendor": "x"}}',
        b'{"action": {"type": "pay_invoice", "amount": "10.00"}, "action": {"type": "x"}}',
        b'{"action": {"type": "x", "lines": [{"sku": 1, "sku": 2}]}}',
    ]
    for body in bodies:
        r = await client.post(f"/v1/agents/{world.agent}/propose", content=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, "duplicate_key"), r.text
    r = await client.post(
        "/v1/tenants",
        content=b'{"id": "a", "id": "b", "name": "x"}',
        headers={**bearer(world.admin_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "duplicate_key")
    size = (
        await client.get(f"/v1/tenants/{world.tenant}/audit/entries", headers=bearer(world.auditor))
    ).json()["size"]
    assert size == entries_before


async def test_non_json_bodies(client):
    world = await make_world(client)
    url = f"/v1/agents/{world.agent}/propose"
    r = await client.post(
        url,
        content=b'{"action": {"type": "x"}}',
        headers={**bearer(world.agent_token), "Content-Type": "text/plain"},
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    for body in (b'{"action": {"type": "x", "n": NaN}}', b'{"action": {"type": "x", "s": "\xff"}}', b"{nope"):
        r = await client.post(
            url, content=body, headers={**bearer(world.agent_token), "Content-Type": "application/json"}
        )
        assert (r.status_code, r.json()["code"]) == (400, "invalid_json"), body
    r = await client.post(
        url,
        json=pay(),
        headers={**bearer(world.agent_token), "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201
