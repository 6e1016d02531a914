"""API keys: shown once, listed without secrets, revoked at once, rotated, expiring; both backends."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.clock import hash_token
from gateway.storage import open_database
from tests.integration.helpers import bearer, make_world, pay, verified_log

PAST = "2001-01-01T00:00:00.000000Z"


def code(r) -> tuple[int, str | None]:
    is_problem = r.headers.get("content-type", "").startswith("application/problem+json")
    return r.status_code, r.json()["code"] if is_problem else None


@pytest.fixture
async def db(backend):
    """A connection of the test's own to the gateway's database (the app's runs in another loop)."""
    database = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await database.open()
    yield database
    await database.close()


async def set_expiry(db, key_id: str, expires_at: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?", expires_at, key_id)


async def key_id_of(db, token: str) -> str:
    async with db.read() as conn:
        row = await conn.fetchrow("SELECT id FROM api_keys WHERE token_hash = ?", hash_token(token))
    return row["id"]


async def propose(client, world, token: str):
    return await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(token))


async def test_tokens_are_random_prefixed_and_listed_without_secrets(client):
    world = await make_world(client)
    r = await client.post(
        "/v1/tenants/acme/api-keys",
        json={"role": "auditor", "ttl_seconds": 3600},
        headers=bearer(world.admin_token),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert token.startswith("vk_") and len(token) >= 3 + 43  # 256 bits, base64url
    assert created["expires_at"] is not None and created["id"].startswith("key_")
    r = await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.auditor))
    assert r.status_code == 200
    keys = {k["id"]: k for k in r.json()}
    assert set(keys[created["id"]]) == {
        "id", "role", "agent_id", "created_at", "expires_at", "last_used_at", "revoked_at"
    }  # fmt: skip
    assert keys[created["id"]]["expires_at"] == created["expires_at"]
    assert sorted(k["role"] for k in keys.values()) == ["agent", "auditor", "auditor", "tenant_admin"]
    assert [k["agent_id"] for k in keys.values() if k["role"] == "agent"] == ["ap-bot"]
    for secret in (token, hash_token(token), world.agent_token, hash_token(world.agent_token)):
        assert secret not in r.text
    for entry in await verified_log(client, world):
        assert token not in entry.raw.decode() and hash_token(token) not in entry.raw.decode()


async def test_last_used_is_recorded_at_most_once_a_minute(client, db):
    world = await make_world(client)
    auditor_key = await key_id_of(db, world.auditor)
    assert (await client.get("/v1/tenants/acme", headers=bearer(world.auditor))).status_code == 200
    before = {
        k["id"]: k
        for k in (await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.admin_token))).json()
    }
    assert before[auditor_key]["last_used_at"] is not None
    first = before[auditor_key]["last_used_at"]
    for _ in range(3):
        assert (await client.get("/v1/tenants/acme", headers=bearer(world.auditor))).status_code == 200
    after = {
        k["id"]: k
        for k in (await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.admin_token))).json()
    }
    assert after[auditor_key]["last_used_at"] == first
    assert (await propose(client, world, world.agent_token)).status_code == 201
    agent_key = await key_id_of(db, world.agent_token)
    after = {
        k["id"]: k
        for k in (await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.admin_token))).json()
    }
    assert after[agent_key]["last_used_at"] is not None


async def test_revoked_token_answers_401_at_once_and_the_revocation_is_audited(client, db):
    world = await make_world(client)
    auditor_key = await key_id_of(db, world.auditor)
    r = await client.delete(f"/v1/tenants/acme/api-keys/{auditor_key}", headers=bearer(world.tenant_admin))
    assert r.status_code == 204 and r.content == b""
    assert code(await client.get("/v1/tenants/acme", headers=bearer(world.auditor))) == (401, "invalid_token")
    # again: nothing changes, and no second entry
    r = await client.delete(f"/v1/tenants/acme/api-keys/{auditor_key}", headers=bearer(world.tenant_admin))
    assert r.status_code == 204
    keys = {
        k["id"]: k
        for k in (await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.tenant_admin))).json()
    }
    assert keys[auditor_key]["revoked_at"] is not None
    r = await client.delete("/v1/tenants/acme/api-keys/key_nope", headers=bearer(world.tenant_admin))
    assert code(r) == (404, "api_key_not_found")
    world.auditor = world.tenant_admin  # verified_log reads with this token
    revoked = [e for e in await verified_log(client, world) if e.type == "api_key.revoked"]
    assert len(revoked) == 1
    assert revoked[0].data == {"id": auditor_key, "role": "auditor", "agent_id": None}
    assert revoked[0].actor.startswith("tenant_admin:key_")


async def test_revoked_agent_token_stops_proposing_at_once_despite_the_cache(client, db):
    world = await make_world(client)
    assert (await propose(client, world, world.agent_token)).status_code == 201  # now cached
    agent_key = await key_id_of(db, world.agent_token)
    r = await client.delete(f"/v1/tenants/acme/api-keys/{agent_key}", headers=bearer(world.tenant_admin))
    assert r.status_code == 204
    assert code(await propose(client, world, world.agent_token)) == (401, "invalid_token")
    r = await client.get("/v1/actions", headers=bearer(world.tenant_admin))
    assert len(r.json()["actions"]) == 1


async def test_a_revocation_in_another_process_stops_a_cached_agent_at_commit(backend, client, db):
    """Two gateways on one database: the first has the agent cached; the second revokes it.
    The first's chain writer re-checks the key at commit, so not one more proposal lands."""
    world = await make_world(client)
    assert (await propose(client, world, world.agent_token)).status_code == 201  # cached in the first
    agent_key = await key_id_of(db, world.agent_token)
    other_app = create_app(backend.settings())
    async with AsyncTestClient(app=other_app) as other:
        r = await other.delete(f"/v1/tenants/acme/api-keys/{agent_key}", headers=bearer(world.tenant_admin))
        assert r.status_code == 204
    assert code(await propose(client, world, world.agent_token)) == (401, "invalid_token")
    r = await client.get("/v1/actions", headers=bearer(world.tenant_admin))
    assert len(r.json()["actions"]) == 1


async def test_rotation_gives_a_new_token_and_revokes_the_old(client, db):
    world = await make_world(client)
    old_key = await key_id_of(db, world.agent_token)
    assert (await propose(client, world, world.agent_token)).status_code == 201  # cached
    r = await client.post("/v1/tenants/acme/agents/ap-bot/token", headers=bearer(world.tenant_admin))
    assert r.status_code == 201, r.text
    rotated = r.json()
    assert rotated["token"].startswith("vk_") and rotated["token"] != world.agent_token
    assert rotated["revoked_key_ids"] == [old_key] and rotated["agent_id"] == "ap-bot"
    assert code(await propose(client, world, world.agent_token)) == (401, "invalid_token")
    assert (await propose(client, world, rotated["token"])).status_code == 201
    r = await client.post(
        "/v1/tenants/acme/agents/ap-bot/token", json={"ttl_seconds": 60}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 201 and r.json()["expires_at"] is not None
    assert r.json()["revoked_key_ids"] == [rotated["id"]]
    r = await client.post("/v1/tenants/acme/agents/nobody/token", headers=bearer(world.tenant_admin))
    assert code(r) == (404, "agent_not_found")
    entries = [e for e in await verified_log(client, world) if e.type == "agent.token_rotated"]
    assert [e.data["revoked_key_ids"] for e in entries] == [[old_key], [rotated["id"]]]
    assert all(rotated["token"] not in e.raw.decode() for e in entries)


async def test_expired_tokens_answer_token_expired(client, db):
    world = await make_world(client)
    r = await client.post(
        "/v1/tenants/acme/api-keys",
        json={"role": "auditor", "expires_at": "2031-01-01T00:00:00Z"},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201 and r.json()["expires_at"] == "2031-01-01T00:00:00.000000Z"
    created = r.json()
    assert (await client.get("/v1/tenants/acme", headers=bearer(created["token"]))).status_code == 200
    await set_expiry(db, created["id"], PAST)
    assert code(await client.get("/v1/tenants/acme", headers=bearer(created["token"]))) == (
        401,
        "token_expired",
    )
    # an agent whose token expires while its authentication is cached: refused at commit
    assert (await propose(client, world, world.agent_token)).status_code == 201
    await set_expiry(db, await key_id_of(db, world.agent_token), PAST)
    assert code(await propose(client, world, world.agent_token)) == (401, "token_expired")
    r = await client.post(
        "/v1/tenants/acme/agents",
        json={"id": "brief-bot", "ttl_seconds": 30},
        headers=bearer(world.tenant_admin),
    )
    assert (
        r.status_code == 201 and r.json()["expires_at"] is not None and r.json()["key_id"].startswith("key_")
    )


async def test_bad_expiries_are_refused(client):
    world = await make_world(client)
    for body in [
        {"role": "auditor", "expires_at": PAST},
        {"role": "auditor", "expires_at": "tomorrow"},
        {"role": "auditor", "expires_at": "2999-01-01T00:00:00"},  # no zone
        {"role": "auditor", "ttl_seconds": 0},
        {"role": "auditor", "ttl_seconds": 10**10},
        {"role": "auditor", "ttl_seconds": 60, "expires_at": "2031-01-01T00:00:00Z"},
    ]:
        r = await client.post("/v1/tenants/acme/api-keys", json=body, headers=bearer(world.tenant_admin))
        assert code(r) == (422, "invalid_expiry"), body
    r = await client.post(
        "/v1/tenants/acme/agents/ap-bot/token", json={"ttl_seconds": -1}, headers=bearer(world.tenant_admin)
    )
    assert code(r) == (422, "invalid_expiry")
    assert (await propose(client, world, world.agent_token)).status_code == 201  # the refusal revoked nothing
