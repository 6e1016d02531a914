"""Tampering with the stored log, on both backends: `verdict audit check` names the first entry whose
bytes no longer match, and the gateway notices by itself — it stops signing checkpoints for that
tenant (only), answers its log routes with 500 `log_integrity_error`, turns `/health` to 503 and
logs the failure once; a restarted gateway finds it again.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from audit import encode_entry, hash_leaf
from gateway.storage import Database
from tests.integration.helpers import bearer, make_world, pay, read_log
from tests.integration.process import GatewayProcess
from tests.integration.test_audit_log import database, propose, verdict_cli
from tests.integration.test_crash import seed

# ---- tampering, as an operator with write access to the database would


async def entry_at(db: Database, seq: int) -> bytes:
    async with db.read() as conn:
        row = await conn.fetchrow("SELECT entry FROM audit_entries WHERE tenant_id = 'acme' AND seq = ?", seq)
    return bytes(row["entry"])


async def set_entry(db: Database, seq: int, raw: bytes) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE audit_entries SET entry = ? WHERE tenant_id = 'acme' AND seq = ?", raw, seq
        )


async def edit_one_digit(db: Database, seq: int) -> None:
    raw = await entry_at(db, seq)
    edited = raw.replace(b'"time":"2', b'"time":"3', 1)  # still canonical JSON, one digit changed
    assert edited != raw
    await set_entry(db, seq, edited)


async def add_a_space(db: Database, seq: int) -> None:
    raw = await entry_at(db, seq)
    edited = raw.replace(f'"seq":{seq},'.encode(), f'"seq": {seq},'.encode(), 1)  # the same JSON value
    assert edited != raw
    await set_entry(db, seq, edited)


async def swap_entries(db: Database, seq: int) -> None:
    """Swap the bytes of entries `seq` and `seq + 1`."""
    first, second = await entry_at(db, seq), await entry_at(db, seq + 1)
    await set_entry(db, seq, second)
    await set_entry(db, seq + 1, first)


async def reorder_rows(db: Database, seq: int) -> None:
    """Swap the positions (the `seq` column) of rows `seq` and `seq + 1`, their bytes untouched."""
    async with db.transaction() as conn:
        for old, new in ((seq, -1), (seq + 1, seq), (-1, seq + 1)):
            await conn.execute(
                "UPDATE audit_entries SET seq = ? WHERE tenant_id = 'acme' AND seq = ?", new, old
            )


async def delete_entry(db: Database, seq: int) -> None:
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM audit_entries WHERE tenant_id = 'acme' AND seq = ?", seq)


async def insert_entry(db: Database, seq: int) -> None:
    """Move entries `seq`… one place up and put a well-formed entry linking to entry `seq - 1` in
    the gap, as a forger would; the chain head counts it."""
    before = await entry_at(db, seq - 1)
    forged = encode_entry(
        seq=seq,
        tenant="acme",
        type="action.proposed",
        time="2026-12-01T00:00:00Z",
        action_id="act_forged",
        actor="agent:ap-bot",
        data={"note": "inserted"},
        prev=hash_leaf(before).hex(),
    )
    shift = 1_000_000
    async with db.transaction() as conn:
        for delta in (shift + 1, -shift):  # in two steps: no two rows share a seq on the way
            await conn.execute(
                "UPDATE audit_entries SET seq = seq + ? WHERE tenant_id = 'acme' AND seq >= ?",
                delta,
                seq if delta > 0 else seq + shift,
            )
        await conn.execute(
            "INSERT INTO audit_entries (tenant_id, seq, entry) VALUES ('acme', ?, ?)", seq, forged
        )
        await conn.execute("UPDATE audit_heads SET size = size + 1 WHERE tenant_id = 'acme'")


async def grow_log(client_or_url, world, size: int) -> None:
    """Propose until the tenant's log holds at least `size` entries."""
    while len(await read_log(client_or_url, world)) < size:
        r = await client_or_url.post(
            f"/v1/agents/{world.agent}/propose", json=pay("12.00"), headers=bearer(world.agent_token)
        )
        assert r.status_code == 201, r.text


# ---- `verdict audit check` against the database


@pytest.mark.parametrize(
    ("tamper", "seq", "named"),
    [
        (edit_one_digit, 20, 20),
        (add_a_space, 5, 5),
        (swap_entries, 10, 10),
        (reorder_rows, 10, 10),
        (delete_entry, 10, 10),
        (insert_entry, 10, 10),
    ],
    ids=["edit", "non-canonical", "swap", "reorder", "delete", "insert"],
)
async def test_audit_check_names_the_first_entry_that_no_longer_matches(client, backend, tamper, seq, named):
    world = await make_world(client)
    await grow_log(client, world, 26)
    r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    run = verdict_cli(backend, "check", "--tenant", "acme")
    assert run.returncode == 0, run.stderr
    async with database(backend) as db:
        await tamper(db, seq)
    run = verdict_cli(backend, "check", "--tenant", "acme")
    assert run.returncode == 1
    assert f"FAILED acme at entry {named}:" in run.stderr, run.stderr


# ---- the gateway notices by itself


async def test_a_tampered_log_stops_signing_for_that_tenant_only_and_is_logged_once(client, backend, caplog):
    acme = await make_world(client)
    globex = await make_world(client, tenant="globex")
    action = (await propose(client, acme))["action_id"]
    await propose(client, globex)
    for world in (acme, globex):
        r = await client.post(f"/v1/tenants/{world.tenant}/audit/checkpoint", headers=bearer(world.auditor))
        assert r.status_code == 200, r.text
    async with database(backend) as db:
        async with db.read() as conn:
            signed = await conn.fetchrow(
                "SELECT max(size) AS size FROM audit_checkpoints WHERE tenant_id = 'acme'"
            )
        await edit_one_digit(db, 3)
    # the log is smaller than the sample the integrator re-checks: the edit is found before signing
    await propose(client, acme)
    await propose(client, globex)
    caplog.set_level(logging.ERROR, logger="verdict.audit")
    for _ in range(3):
        r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(acme.auditor))
        assert r.status_code == 500, r.text
        assert r.json()["code"] == "log_integrity_error" and r.json()["seq"] == 3
        assert "entry 3" in r.json()["detail"]
    for path, params in (
        ("/v1/tenants/acme/audit/checkpoint", {}),
        ("/v1/tenants/acme/audit/entries", {}),
        ("/v1/tenants/acme/audit/proof/inclusion", {"index": 0, "size": 1}),
        ("/v1/tenants/acme/audit/proof/consistency", {"from": 1, "to": 2}),
        (f"/v1/actions/{action}/proof", {}),
    ):
        r = await client.get(path, params=params, headers=bearer(acme.auditor))
        assert r.status_code == 500 and r.json()["code"] == "log_integrity_error", (path, r.text)
    # the other tenant signs on and serves its log
    r = await client.post("/v1/tenants/globex/audit/checkpoint", headers=bearer(globex.auditor))
    assert r.status_code == 200, r.text
    assert int(r.text.split("\n")[1]) == len(await read_log(client, globex))
    r = await client.get("/v1/tenants/globex/audit/entries", headers=bearer(globex.auditor))
    assert r.status_code == 200
    r = await client.get("/health")
    assert r.status_code == 503
    assert [p["code"] for p in r.json()["problems"]] == ["log_integrity_error"]
    assert "acme" not in r.text  # /health is open: which tenant is in the gateway's log
    found = [rec for rec in caplog.records if "failed an integrity check" in rec.getMessage()]
    assert len(found) == 1 and "tenant acme" in found[0].getMessage() and "entry 3" in found[0].getMessage()
    async with database(backend) as db, db.read() as conn:
        after = await conn.fetchrow(
            "SELECT max(size) AS size FROM audit_checkpoints WHERE tenant_id = 'acme'"
        )
    assert after["size"] == signed["size"]


async def test_the_checkpoint_route_sends_one_charset_parameter(client):
    """It sent `text/plain; charset=utf-8; charset=utf-8`, which strict clients refuse."""
    world = await make_world(client)
    for call in (client.post, client.get):
        r = await call("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/plain; charset=utf-8"


# ---- through a real process: tampered while stopped, found at restart


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tamper", "seq", "named"),
    [(edit_one_digit, 20, 20), (swap_entries, 10, 10), (add_a_space, 5, 5)],
    ids=["edit-digit-of-20", "swap-10-and-11", "space-in-5"],
)
async def test_a_restarted_gateway_finds_a_log_tampered_while_it_was_stopped(backend, tamper, seq, named):
    env = {**backend.env(), "VERDICT_CHECKPOINT_INTERVAL": "0.2"}
    server = GatewayProcess(env).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        world = await seed(server.url, admin)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await grow_log(http, world, 26)
            action = (await propose(http, world))["action_id"]
            r = await http.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
            assert r.status_code == 200, r.text
    finally:
        server.stop()
    async with database(backend) as db:
        async with db.read() as conn:
            signed = (
                await conn.fetchrow(
                    "SELECT max(size) AS size FROM audit_checkpoints WHERE tenant_id = 'acme'"
                )
            )["size"]
        assert signed > 20
        await tamper(db, seq)

    server = GatewayProcess(env).start(ready=(200, 503))  # start-up is not held up by the scan
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + 30
            while (r := await http.get("/health")).status_code != 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert r.status_code == 503
            assert "log_integrity_error" in [p["code"] for p in r.json()["problems"]]
            await propose(http, world)  # proposals go on: the propose path is not held up
            await asyncio.sleep(1.0)  # five checkpoint intervals
            for method, path, params in (
                ("GET", "/v1/tenants/acme/audit/checkpoint", {}),
                ("POST", "/v1/tenants/acme/audit/checkpoint", {}),
                ("GET", "/v1/tenants/acme/audit/entries", {"start": 0}),
                ("GET", "/v1/tenants/acme/audit/proof/inclusion", {"index": 1, "size": 2}),
                ("GET", "/v1/tenants/acme/audit/proof/consistency", {"from": 1, "to": 2}),
                ("GET", f"/v1/actions/{action}/proof", {}),
            ):
                r = await http.request(method, path, params=params, headers=bearer(world.auditor))
                assert r.status_code == 500, (path, r.text)
                assert r.json()["code"] == "log_integrity_error" and r.json()["seq"] == named, r.text
    finally:
        output = server.stop()
    assert output.count("failed an integrity check") == 1, output
    assert f"tenant acme failed an integrity check at entry {named}" in output
    async with database(backend) as db, db.read() as conn:
        after = await conn.fetchrow(
            "SELECT max(size) AS size FROM audit_checkpoints WHERE tenant_id = 'acme'"
        )
    assert after["size"] == signed  # nothing signed since
    run = verdict_cli(backend, "check", "--tenant", "acme")
    assert run.returncode == 1 and f"FAILED acme at entry {named}:" in run.stderr, run.stderr


@pytest.mark.parametrize("last", [False, True], ids=["inside", "last"])
async def test_an_entry_changed_before_its_first_checkpoint_is_named_by_the_integrator(backend, last):
    """Not yet in the tree: the next entry's `prev`, or for the last one the chain head, is the
    evidence of what it was."""
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    app = create_app(backend.settings(checkpoint_interval=0))  # checkpoints only on request
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
        assert r.status_code == 200, r.text
        signed = int(r.text.split("\n")[1])
        for _ in range(3):
            await propose(client, world)
        size = len(await read_log(client, world))
        seq = size - 1 if last else signed + 2
        async with database(backend) as db:
            await edit_one_digit(db, seq)
        r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
        assert r.status_code == 500 and r.json()["code"] == "log_integrity_error", r.text
        assert r.json()["seq"] == seq, r.text
    run = verdict_cli(backend, "check", "--tenant", "acme")
    assert run.returncode == 1 and f"FAILED acme at entry {seq}:" in run.stderr, run.stderr
