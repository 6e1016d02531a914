"""Shared fixtures: backends (SQLite, PostgreSQL), a running app per test, an in-process chain."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from tests.chain import ContractChain

# Property tests check results, never speed: no per-example deadline and no "too slow" health
# check, which would fail spuriously on a loaded CI machine (timing belongs in bench/).
settings.register_profile("verdict", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("verdict")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets a node id of its own. Schemathesis (4.x on pytest 9) gives each API
    operation's test the function's id (tests/integration/test_fuzz.py); pytest-xdist's grouped
    scheduling (`make test`: --dist loadgroup) keys its work by node id, so all but one of them
    were never run, silently. Such a test takes its name, which names the operation."""
    for item in items:
        if type(item).__name__ == "SchemathesisFunction" and not item.nodeid.endswith(f"::{item.name}"):
            item._id = item.parent.id.child(item.name)  # pytest 9 keeps the node id here
    seen: dict[str, int] = {}
    for item in items:
        seen[item.nodeid] = seen.get(item.nodeid, 0) + 1
    twice = sorted(nodeid for nodeid, count in seen.items() if count > 1)
    if twice:  # a parallel run would run only one of each: fail instead of losing tests
        raise pytest.UsageError(f"{len(twice)} node ids name several tests, e.g. {twice[0]}")


PG_URL_ENV = "VERDICT_TEST_DATABASE_URL"
REQUIRE_PG_ENV = "VERDICT_REQUIRE_PG"


def pg_url_or_skip() -> str:
    """The PostgreSQL URL for tests. Skips when none is configured, unless VERDICT_REQUIRE_PG=1,
    in which case the test fails: CI must never pass by skipping PostgreSQL."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get(REQUIRE_PG_ENV) == "1":
            pytest.fail(f"{REQUIRE_PG_ENV}=1 but {PG_URL_ENV} is not set")
        pytest.skip(f"set {PG_URL_ENV} to run PostgreSQL tests")
    return url


class Backend:
    """Where a test's gateway keeps its data: a fresh SQLite file or a fresh PostgreSQL schema."""

    def __init__(self, name: str, data_dir: Path, url: str | None, schema: str | None) -> None:
        self.name, self.data_dir, self.url, self.schema = name, data_dir, url, schema

    def settings(self, **overrides):
        from gateway.settings import Settings

        fields = {"data_dir": self.data_dir, "database_url": self.url, "database_schema": self.schema}
        return Settings(**{**fields, **overrides})

    def env(self) -> dict[str, str]:
        return self.settings().to_env()


def _drop_schema(url: str, schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _check_pg(url: str) -> None:
    import asyncio

    import asyncpg

    async def ping() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get(REQUIRE_PG_ENV) == "1":
            pytest.fail(f"PostgreSQL at {url} is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {url} unreachable: {exc}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    data_dir = tmp_path / "verdict"
    if request.param == "sqlite":
        yield Backend("sqlite", data_dir, None, None)
        return
    url = pg_url_or_skip()
    _check_pg(url)
    schema = f"verdict_test_{secrets.token_hex(6)}"
    try:
        yield Backend("postgresql", data_dir, url, schema)
    finally:
        _drop_schema(url, schema)


@pytest.fixture
async def client(backend: Backend) -> AsyncIterator:
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    app = create_app(backend.settings())
    async with AsyncTestClient(app=app) as test_client:
        test_client.app_state = app.state
        yield test_client


@pytest.fixture(scope="session")
def contract_chain() -> Iterator[ContractChain]:
    """A py-evm chain answering JSON-RPC at ``contract_chain.rpc_url`` (see tests/chain.py).

    Deploy wallets with ``contract_chain.deploy_owner_wallet(owners, threshold)``, which returns
    the wallet's address. One chain per session (starting one takes ~2 s); tests deploy their own
    contracts, so they do not see each other's state.
    """
    from tests.chain import ContractChain  # web3 and eth-tester only for tests that use it

    with ContractChain() as chain:
        yield chain
