"""The per-address limit of the public routes holds for the whole deployment, not per process."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.errors import RateLimited
from gateway.services.address_limits import ROWS_PER_STATEMENT, WINDOW_SECONDS, SharedAddressLimiter
from gateway.storage import open_database
from tests.integration.process import GatewayProcess

BURST = 20
RATE = 0.01  # per second: refills nothing worth counting during a test


async def fresh_address_window(margin: float) -> None:
    """Wait, if needed, so that the next `margin` seconds fall in one address window."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < margin:
        await asyncio.sleep(left + 0.05)


async def test_two_processes_on_one_database_share_an_addresss_count(backend):
    """Two limiters on one database, as in two workers or two hosts: an address gets the
    deployment's limit once, not once per process (which was twice the limit)."""
    databases = [
        open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema) for _ in range(2)
    ]
    for db in databases:
        await db.open()
    try:
        limiters = [SharedAddressLimiter(db, RATE, BURST) for db in databases]
        assert limiters[0].limit == BURST
        await fresh_address_window(margin=5)
        admitted = 0
        for i in range(3 * BURST):
            limiter = limiters[i % 2]
            try:
                limiter.check("192.0.2.1")
                admitted += 1
            except RateLimited as refused:
                assert 1 <= refused.retry_after_seconds <= WINDOW_SECONDS
            await limiter.sync()  # what the background task does every SYNC_SECONDS
        # the other process may admit one more before it reads the count the first one wrote
        # (the price of keeping the database off the request path); never twice the limit
        assert BURST <= admitted <= BURST + 1
        limiters[1].check("192.0.2.2")  # another address has its own count
        await limiters[1].sync()
        async with databases[0].read() as conn:
            rows = await conn.fetch("SELECT address, requests FROM address_windows")
        assert {row["address"]: int(row["requests"]) for row in rows} == {
            "192.0.2.1": admitted,
            "192.0.2.2": 1,
        }
        for limiter in limiters:
            with pytest.raises(RateLimited):
                limiter.check("192.0.2.1")
            await limiter.flush()
    finally:
        for db in databases:
            await db.close()


async def test_address_counts_of_many_addresses_are_shared_in_one_sync(backend):
    """More addresses than one statement takes (ROWS_PER_STATEMENT): every count arrives."""
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    try:
        limiter = SharedAddressLimiter(db, RATE, BURST)
        await fresh_address_window(margin=5)
        addresses = [f"198.51.100.{i % 250}:{i}" for i in range(2 * ROWS_PER_STATEMENT + 50)]
        for address in addresses:
            limiter.check(address)
            limiter.check(address)
        await limiter.sync()
        async with db.read() as conn:
            rows = await conn.fetch("SELECT address, requests FROM address_windows")
        assert {row["address"]: int(row["requests"]) for row in rows} == dict.fromkeys(addresses, 2)
        await limiter.flush()
    finally:
        await db.close()


async def test_address_counts_survive_a_database_that_cannot_be_used(backend, caplog):
    """A failed sync fails no request: it logs once and sends the counts with the next sync."""
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    limiter = SharedAddressLimiter(db, RATE, BURST)
    await fresh_address_window(margin=5)
    limiter.check("192.0.2.7")
    await db.close()
    await limiter.sync()
    await limiter.sync()
    warnings = [r for r in caplog.records if "could not share the request counts" in r.getMessage()]
    assert len(warnings) == 1
    limiter.check("192.0.2.7")  # the request path does not care
    await db.open()
    try:
        await limiter.sync()
        async with db.read() as conn:
            row = await conn.fetchrow("SELECT requests FROM address_windows WHERE address = ?", "192.0.2.7")
        assert row is not None and int(row["requests"]) == 2
        await limiter.flush()
    finally:
        await db.close()


async def test_two_gateways_on_one_database_bound_an_addresss_combined_rate(backend):
    """Two app instances, with the counts shared by their own background task: together they
    admit the limit plus at most what arrives within one sync interval, not twice the limit."""
    settings = backend.settings(public_rate_per_second=RATE, public_burst=BURST)
    first, second = create_app(settings), create_app(settings)
    async with AsyncTestClient(app=first) as one, AsyncTestClient(app=second) as two:
        for client in (one, two):
            assert client.app.state.address_limiter.limit == BURST
            client.app.state.address_limiter.sync_seconds = 0.05
        await fresh_address_window(margin=6)
        statuses = []
        for i in range(4 * BURST):
            statuses.append((await (one, two)[i % 2].get("/v1/keys")).status_code)
            await asyncio.sleep(0.02)
        admitted = statuses.count(200)
        assert BURST <= admitted <= BURST + 6, statuses
        assert statuses[-10:] == [429] * 10
        for client in (one, two):
            refused = await client.get("/v1/actions/act_x/approval-request", params={"role": "cfo"})
            assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_SECONDS


@pytest.mark.slow
def test_two_worker_processes_share_an_addresss_limit(backend, tmp_path):
    """`verdict serve --workers 2`: fresh connections land on both workers; together they
    admit one address about the limit per window, not the limit per worker."""
    env = {**backend.env(), "VERDICT_PUBLIC_RATE_PER_SECOND": str(RATE), "VERDICT_PUBLIC_BURST": str(BURST)}
    server = GatewayProcess(env, "--workers", "2").start(timeout=60)
    try:
        left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
        if left < 8:
            time.sleep(left + 0.05)
        admitted_per_window: dict[int, int] = {}
        statuses = []
        for _ in range(3 * BURST):
            window = int(time.time() // WINDOW_SECONDS)
            with httpx.Client(base_url=server.url, timeout=10) as http:  # a new connection each
                status = http.get("/v1/keys").status_code
            statuses.append(status)
            admitted_per_window[window] = admitted_per_window.get(window, 0) + (status == 200)
            time.sleep(0.02)
        # two workers with a bucket each admitted 2 x BURST; shared, the limit plus what each
        # admits within one sync interval (0.25 s) after the count reached it
        assert max(admitted_per_window.values()) <= BURST + 8, (admitted_per_window, statuses)
        assert 429 in statuses
    finally:
        server.stop()
