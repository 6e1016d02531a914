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
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    assert r.status_code == 201


async def test_body_over_the_limit_is_413(client):
    world = await make_world(client)
    body = pay(note="x" * 70_000)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=bearer(world.agent_token))
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
