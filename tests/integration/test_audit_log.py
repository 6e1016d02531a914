"""The verifiable log through the API, on both backends: checkpoints, proofs, proof bundles.

Everything the gateway serves is checked here with the auditor's tools only (`audit.*`, trusting
the vkey), against roots recomputed from the exact entry bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from audit import (
    hash_leaf,
    parse_vkey,
    root_hash,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from audit.bundle import verify_bundle
from audit.errors import BundleError
from gateway.services.audit import AuditService
from gateway.storage import Database, open_database
from tests.integration.helpers import bearer, make_world, pay, read_log


async def propose(client, world, amount="1200.00"):
    r = await client.post(
        f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=bearer(world.agent_token)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def vkey_of(client, world) -> str:
    r = await client.get(f"/v1/tenants/{world.tenant}/keys", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    keys = r.json()
    assert keys["log"]["origin"] == f"localhost/verdict/{world.tenant}"
    assert keys["log"]["vkey"].startswith(f"localhost/verdict/{world.tenant}+")
    assert keys["verdict_signers"][0]["status"] == "active"
    return keys["log"]["vkey"]


async def checkpoint(client, world, *, new: bool = False):
    call = client.post if new else client.get
    r = await call(f"/v1/tenants/{world.tenant}/audit/checkpoint", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


@asynccontextmanager
async def database(backend) -> AsyncIterator[Database]:
    """The test's own connection to the gateway's database (the app runs on another event loop)."""
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def b64(hashes: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in hashes]


async def test_checkpoint_signs_the_root_of_the_exact_entries(client):
    world = await make_world(client)
    for amount in ("10.00", "20000.00", "60000.00"):
        await propose(client, world, amount)
    verifier = parse_vkey(await vkey_of(client, world))
    signed = await checkpoint(client, world, new=True)
    tree = verify_checkpoint(signed, verifier, expected_origin="localhost/verdict/acme")
    log = await read_log(client, world)
    assert tree.size == len(log)
    assert tree.root_hash == root_hash([hash_leaf(raw) for raw in log])
    # GET returns the latest; asking for it by size returns the same note
    assert await checkpoint(client, world) == signed
    r = await client.get(
        "/v1/tenants/acme/audit/checkpoint", params={"size": tree.size}, headers=bearer(world.auditor)
    )
    assert r.text == signed
    r = await client.get(
        "/v1/tenants/acme/audit/checkpoint", params={"size": 1}, headers=bearer(world.auditor)
    )
    assert r.status_code == 404 and r.json()["code"] == "checkpoint_not_found"


async def test_inclusion_and_consistency_proofs_verify_against_checkpoints(client):
    world = await make_world(client)
    verifier = parse_vkey(await vkey_of(client, world))
    first = verify_checkpoint(await checkpoint(client, world, new=True), verifier)
    for n in range(5):
        await propose(client, world, f"{n + 1}.00")
    second = verify_checkpoint(await checkpoint(client, world, new=True), verifier)
    assert second.size > first.size
    log = await read_log(client, world)
    for index in range(second.size):
        r = await client.get(
            "/v1/tenants/acme/audit/proof/inclusion",
            params={"index": index, "size": second.size},
            headers=bearer(world.auditor),
        )
        assert r.status_code == 200, r.text
        verify_inclusion(index, second.size, hash_leaf(log[index]), b64(r.json()["proof"]), second.root_hash)
    r = await client.get(
        "/v1/tenants/acme/audit/proof/consistency",
        params={"from": first.size, "to": second.size},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 200, r.text
    verify_consistency(first.size, second.size, first.root_hash, second.root_hash, b64(r.json()["proof"]))


async def test_proofs_for_sizes_not_yet_checkpointed_integrate_first(client):
    world = await make_world(client)
    await propose(client, world)
    log = await read_log(client, world)
    size = len(log)
    r = await client.get(
        "/v1/tenants/acme/audit/proof/inclusion",
        params={"index": size - 1, "size": size},
        headers=bearer(world.auditor),
    )
    assert r.status_code == 200, r.text
    verify_inclusion(
        size - 1, size, hash_leaf(log[-1]), b64(r.json()["proof"]), root_hash([hash_leaf(x) for x in log])
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("inclusion", {"index": 5, "size": 5}),
        ("inclusion", {"index": 0, "size": 10_000}),
        ("inclusion", {"index": -1, "size": 3}),
        ("consistency", {"from": 4, "to": 3}),
        ("consistency", {"from": 1, "to": 10_000}),
    ],
)
async def test_impossible_proof_requests_are_400_invalid_range(client, path, params):
    world = await make_world(client)
    r = await client.get(f"/v1/tenants/acme/audit/proof/{path}", params=params, headers=bearer(world.auditor))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_range"


async def test_action_proof_bundle_verifies_offline(client, tmp_path):
    world = await make_world(client)
    allowed = await propose(client, world, "1200.00")
    vkey = await vkey_of(client, world)
    r = await client.get(f"/v1/actions/{allowed['action_id']}/proof", headers=bearer(world.agent_token))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["format"] == "verdict-proof/v1"
    assert bundle["log"] == {"origin": "localhost/verdict/acme", "vkey": vkey}
    keys = (await client.get("/v1/keys")).json()
    signers = [s["address"] for s in keys["verdict_signers"]]
    verified = verify_bundle(bundle, vkey, verdict_signers=signers)
    assert [e.type for e in verified.entries] == ["action.proposed", "verdict.issued"]
    assert all(e.action_id == allowed["action_id"] for e in verified.entries)
    assert verified.meaning_checked == {"action.proposed": 1, "verdict.issued": 1}
    # the same, as an auditor would: the command line, no server
    path, vkey_file = tmp_path / "bundle.json", tmp_path / "log.vkey"
    path.write_text(json.dumps(bundle))
    vkey_file.write_text(vkey + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(path), "--vkey", f"@{vkey_file}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("OK  2 entries")
    # another tenant's log key does not verify it
    other = await make_world(client, tenant="globex")
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle, await vkey_of(client, other))
    assert caught.value.step == "checkpoint"
    # an edited entry fails its inclusion proof, and the CLI names it
    entry = bytearray(base64.b64decode(bundle["entries"][0]["entry"]))
    entry[entry.index(b"1200.00")] = ord("9")
    bundle["entries"][0]["entry"] = base64.b64encode(bytes(entry)).decode()
    path.write_text(json.dumps(bundle))
    run = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(path), "--vkey", vkey],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "FAILED inclusion: entry" in run.stderr


async def test_tenants_are_walls_for_audit_routes(client):
    acme = await make_world(client)
    globex = await make_world(client, tenant="globex")
    action = await propose(client, acme)
    for path, params in [
        ("/v1/tenants/acme/keys", {}),
        ("/v1/tenants/acme/audit/checkpoint", {}),
        ("/v1/tenants/acme/audit/proof/inclusion", {"index": 0, "size": 1}),
        ("/v1/tenants/acme/audit/proof/consistency", {"from": 0, "to": 1}),
        (f"/v1/actions/{action['action_id']}/proof", {}),
    ]:
        for token in (globex.auditor, globex.tenant_admin, globex.agent_token):
            r = await client.get(path, params=params, headers=bearer(token))
            assert r.status_code == 404, (path, r.text)
    r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(globex.auditor))
    assert r.status_code == 404
    # an agent may fetch checkpoints and its own actions' bundles, not proofs of arbitrary entries
    r = await client.get(
        "/v1/tenants/acme/audit/proof/inclusion",
        params={"index": 0, "size": 1},
        headers=bearer(acme.agent_token),
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = await client.get("/v1/tenants/acme/audit/checkpoint")
    assert r.status_code == 401


async def test_an_edited_entry_is_never_signed_over(client, backend):
    world = await make_world(client)
    await propose(client, world)
    last_signed = "SELECT max(size) AS size FROM audit_checkpoints WHERE tenant_id = 'acme'"
    async with database(backend) as db:
        async with db.read() as conn:
            row = await conn.fetchrow("SELECT entry FROM audit_entries WHERE tenant_id = 'acme' AND seq = 3")
            # the background integrator (every 2 s) may have checkpointed the log already; the
            # entry is then in the signed range, which the check before signing samples (the whole
            # log, this small)
            before = (await conn.fetchrow(last_signed))["size"]
        edited = bytes(row["entry"]).replace(b'"acme"', b'"acmf"', 1)
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE audit_entries SET entry = ? WHERE tenant_id = 'acme' AND seq = 3", edited
            )
        await propose(client, world)
        r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
        assert r.status_code == 500 and r.json()["code"] == "log_integrity_error"
        assert "entry 3" in r.json()["detail"] and r.json()["seq"] == 3
        async with db.read() as conn:
            assert (await conn.fetchrow(last_signed))["size"] == before


async def test_an_edited_stored_hash_stops_checkpoints(client, backend):
    world = await make_world(client)
    await checkpoint(client, world, new=True)
    async with database(backend) as db, db.transaction() as conn:
        await conn.execute(
            "UPDATE audit_tree SET hash = ? WHERE tenant_id = 'acme' AND level = 0", b"\x07" * 32
        )
    await propose(client, world)
    r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
    assert r.status_code == 500 and r.json()["code"] == "log_integrity_error"


async def test_checkpoints_follow_the_log_in_the_background(backend):
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    app = create_app(backend.settings(checkpoint_interval=0.05))
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        await propose(client, world)
        size = len(await read_log(client, world))
        async with database(backend) as db:
            audit = AuditService(db, app.state.keyring.log_key, "localhost/verdict")
            for _ in range(200):
                latest = await audit.latest("acme")
                if latest is not None and latest.size == size:
                    break
                await asyncio.sleep(0.05)
        assert latest is not None and latest.size == size


async def test_concurrent_integrators_sign_one_checkpoint_per_size(client, backend):
    """Several processes checkpoint the same log at once: four services, each on its own connections."""
    world = await make_world(client)
    log_key = client.app_state.keyring.log_key
    async with database(backend) as a, database(backend) as b, database(backend) as c, database(backend) as d:
        services = [AuditService(db, log_key, "localhost/verdict") for db in (a, b, c, d)]
        for round_ in range(3):
            await asyncio.gather(*(propose(client, world, f"{round_}.{i:02d}") for i in range(10)))
            results = await asyncio.gather(*(s.checkpoint("acme") for s in services))
            assert len({(r.size, r.root, r.note) for r in results}) == 1
        async with a.read() as conn:
            rows = await conn.fetch(
                "SELECT size, root, note FROM audit_checkpoints WHERE tenant_id = 'acme' ORDER BY size"
            )
    verifier = parse_vkey(await vkey_of(client, world))
    trees = [verify_checkpoint(row["note"], verifier) for row in rows]
    assert [t.size for t in trees] == sorted({t.size for t in trees})
    log = await read_log(client, world)
    leaves = [hash_leaf(raw) for raw in log]
    for tree in trees:
        assert tree.root_hash == root_hash(leaves[: tree.size])


def verdict_cli(backend, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **backend.env()}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


async def test_export_check_and_verify_from_the_command_line(client, backend, tmp_path):
    world = await make_world(client)
    for n in range(3):
        await propose(client, world, f"{n + 1}.00")
    await checkpoint(client, world, new=True)
    await propose(client, world, "4.00")  # not yet integrated: export checkpoints first
    size = len(await read_log(client, world))
    vkey = await vkey_of(client, world)

    run = verdict_cli(backend, "check")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"OK  acme: {size} entries")
    out = tmp_path / "acme.json"
    run = verdict_cli(backend, "export", "--tenant", "acme", "--from", "2", "-o", str(out))
    assert run.returncode == 0, run.stderr
    bundle = json.loads(out.read_text())
    assert [e["index"] for e in bundle["entries"]] == list(range(2, size))
    run = verdict_cli(backend, "verify", str(out), "--vkey", vkey)
    assert run.returncode == 0, run.stderr
    run = verdict_cli(backend, "export", "--tenant", "acme", "--from", "3", "--to", str(size + 1))
    assert run.returncode != 0 and "--to" in run.stderr
    # the same entries as c2sp.org/tlog-proof text, one proof per entry, which verify reads too
    proofs = tmp_path / "acme.tlog-proof"
    run = verdict_cli(backend, "export-proof", "--tenant", "acme", "--from", "2", "-o", str(proofs))
    assert run.returncode == 0, run.stderr
    text = proofs.read_text()
    assert text.count("c2sp.org/tlog-proof@v1") == size - 2
    run = verdict_cli(backend, "verify", str(proofs), "--vkey", vkey)
    assert run.returncode == 0, run.stderr
    proofs.write_text(text.replace("\nindex 2\n", "\nindex 3\n", 1))  # a proof for another entry
    assert verdict_cli(backend, "verify", str(proofs), "--vkey", vkey).returncode != 0

    # the operator drops the last entry and rewinds the chain head: the checkpoints give it away
    async with database(backend) as db, db.transaction() as conn:
        last = await conn.fetchrow(
            "SELECT entry FROM audit_entries WHERE tenant_id = 'acme' AND seq = ?", size - 2
        )
        await conn.execute("DELETE FROM audit_entries WHERE tenant_id = 'acme' AND seq = ?", size - 1)
        await conn.execute(
            "UPDATE audit_heads SET size = ?, head = ? WHERE tenant_id = 'acme'",
            size - 1,
            hash_leaf(bytes(last["entry"])).hex(),
        )
    run = verdict_cli(backend, "check", "--tenant", "acme")
    assert run.returncode == 1
    assert "FAILED acme" in run.stderr and "entries were dropped" in run.stderr


async def test_log_indexes_beyond_64_bits_are_400_not_500(client):
    world = await make_world(client)
    huge = str(2**70)
    for path, params in (
        ("audit/checkpoint", {"size": huge}),
        ("audit/entries", {"start": huge}),
        ("audit/proof/inclusion", {"index": "0", "size": huge}),
        ("audit/proof/consistency", {"from": "1", "to": huge}),
    ):
        r = await client.get(f"/v1/tenants/acme/{path}", params=params, headers=bearer(world.auditor))
        assert r.status_code == 400, (path, r.text)
