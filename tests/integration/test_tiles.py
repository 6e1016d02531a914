"""The log as C2SP tlog-tiles, read by Go's golang.org/x/mod/sumdb/tlog (tests/go/read_tiles.go):
its TileHashReader fetches the tiles by the paths it names, verifies them against the checkpoint,
and the tree hash, leaf hashes of every entry bundle, inclusion and consistency proofs must agree.

Sizes cross tile boundaries (0, 1, 255, 256, 257, 65,536 + 3) and the log grows in many steps
between checks. Entries are seeded through the ledger (the app's own append path) in the test's
event loop, so that the big log builds in seconds; tiles are read over HTTP except for the sizes
0 and 1, which no tenant with an API key has (creating the key is itself an entry): those are
read from the tile service over the same database.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from audit.tiles import TILE_WIDTH, parse_entry_bundle, split_tile, tiles_for_size
from gateway.ledger import EntryDraft, Ledger, Unit, create_chain
from gateway.services.audit import AuditService
from gateway.services.tiles import TileService
from gateway.storage import Database, open_database
from tests.integration.go_programs import build_go
from tests.integration.helpers import bearer, make_world

Fetch = Callable[[str], Awaitable[bytes]]


@pytest.fixture(scope="session")
def go_tiles(tmp_path_factory) -> Path:
    return build_go("read_tiles", tmp_path_factory.mktemp("go"))


@pytest.fixture
async def database(backend, client) -> AsyncIterator[Database]:
    """The test's own connection to the app's database (the app runs in another event loop)."""
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def seed(ledger: Ledger, tenant: str, count: int, chunk: int = 2000) -> None:
    """Append `count` entries to the tenant's chain, `chunk` per unit."""
    for at in range(0, count, chunk):
        drafts = [EntryDraft("test.note", "test", {"n": n}) for n in range(at, min(count, at + chunk))]
        await ledger.append(tenant, Unit(drafts))


async def mirror(fetch: Fetch, directory: Path, checkpoint: str) -> int:
    """Fetch the checkpoint and every tile of its size not already in `directory`; returns the size."""
    size = int(checkpoint.split("\n")[1])
    for tile in tiles_for_size(size):
        target = directory / tile.path()
        if target.exists():
            continue
        data = await fetch(tile.path())
        entries = parse_entry_bundle(data) if tile.level is None else split_tile(data)
        assert len(entries) == tile.width
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "checkpoint").write_text(checkpoint)
    return size


def go_check(binary: Path, vkey: str, directory: Path, old: Path | None = None) -> str:
    args = [str(binary), vkey, str(directory), *([str(old)] if old else [])]
    run = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stdout


async def test_go_tlog_reads_the_tiles_of_every_size(client, database, go_tiles, tmp_path) -> None:
    app = client.app_state
    ledger = Ledger(database)
    try:
        # sizes 0 and 1: a tenant whose chain is empty, then holds one entry (no API key to read over HTTP)
        async with database.transaction() as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, chain_id, verifying_contract, created_at)"
                " VALUES ('bare', 'bare', 1, '0x0000000000000000000000000000000000000001', '2026-01-01T00:00:00Z')"
            )
            await create_chain(conn, "bare")
        audit = AuditService(database, app.keyring.log_key, app.settings.log_origin)
        tiles = TileService(audit)

        async def direct(path: str) -> bytes:
            return (await tiles.tile("bare", path)).data

        bare = tmp_path / "bare"
        for expected in (0, 1):
            size = await mirror(direct, bare, (await audit.checkpoint("bare")).note)
            assert size == expected
            assert go_check(go_tiles, audit.vkey("bare"), bare).startswith("ok")
            await seed(ledger, "bare", 1)

        # over HTTP: 255, 256, 257, growth in many small steps, then 65,536 + 3
        world = await make_world(client)
        headers = bearer(world.auditor)
        vkey = (await client.get("/v1/tenants/acme/keys", headers=headers)).json()["log"]["vkey"]

        async def over_http(path: str) -> bytes:
            r = await client.get(f"/v1/tenants/acme/log/{path}", headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/octet-stream"
            assert "immutable" in r.headers["cache-control"]
            return r.content

        async def checkpoint_at(size: int) -> str:
            head = (await client.get("/v1/tenants/acme/audit/entries?start=0&end=0", headers=headers)).json()
            await seed(ledger, "acme", size - head["size"])
            assert (
                await client.post("/v1/tenants/acme/audit/checkpoint", headers=headers)
            ).status_code == 200
            r = await client.get("/v1/tenants/acme/log/checkpoint", headers=headers)
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
            assert "immutable" not in r.headers["cache-control"]
            return r.text

        log = tmp_path / "acme"
        old = tmp_path / "old.checkpoint"
        sizes = [255, 256, 257, *range(300, 1400, 97), TILE_WIDTH**2 + 3]
        for size in sizes:
            assert await mirror(over_http, log, await checkpoint_at(size)) == size
            assert go_check(go_tiles, vkey, log, old if old.exists() else None).startswith(f"ok: {size}")
            shutil.copy(log / "checkpoint", old)
    finally:
        await ledger.close()


async def test_tile_paths_the_spec_refuses_and_tiles_not_yet_there(client) -> None:
    world = await make_world(client)
    headers = bearer(world.auditor)
    size = int((await client.post("/v1/tenants/acme/audit/checkpoint", headers=headers)).text.split("\n")[1])
    assert size < TILE_WIDTH
    r = await client.get(f"/v1/tenants/acme/log/tile/0/000.p/{size}", headers=headers)
    assert r.status_code == 200 and len(r.content) == 32 * size
    r = await client.get(f"/v1/tenants/acme/log/tile/entries/000.p/{size}", headers=headers)
    assert r.status_code == 200 and len(parse_entry_bundle(r.content)) == size
    assert r.headers["content-encoding"] == "gzip"  # §Log entries: compressed at the HTTP layer
    plain = {**headers, "Accept-Encoding": "identity"}
    r = await client.get(f"/v1/tenants/acme/log/tile/entries/000.p/{size}", headers=plain)
    assert "content-encoding" not in r.headers and len(parse_entry_bundle(r.content)) == size
    for path in ("0/000", f"0/000.p/{size + 1}", "1/000.p/1", "entries/001.p/1"):  # beyond the tree
        r = await client.get(f"/v1/tenants/acme/log/tile/{path}", headers=headers)
        assert (r.status_code, r.json()["code"]) == (404, "tile_not_found"), path
    for path in ("0/0", "0/x000/000", "00/000", "64/000", "0/000.p/0", "0/000.p/256", "0/000.p/07", "x/000"):
        r = await client.get(f"/v1/tenants/acme/log/tile/{path}", headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_tile_path"), path
    r = await client.get(f"/v1/tenants/acme/log/tile/0/000.p/{size}", headers=bearer(world.agent_token))
    assert r.status_code == 403
