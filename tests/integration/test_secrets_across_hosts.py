"""One secrets key per deployment: with a key-encryption key, two gateways on one PostgreSQL
schema with empty data dirs seal and open each other's rail and webhook secrets (the key is
sealed in the database, created once under the key set's lock); a host's older key file is
adopted so that what it sealed stays readable."""

from __future__ import annotations

import base64
import os
import secrets

import pytest
from litestar.testing import AsyncTestClient

from crypto.keys import write_secret_file
from gateway.app import create_app
from gateway.sealing import KEK_ENV, KEK_FILE_ENV, new_kek
from gateway.services.secrets_key import LEGACY_FILES, RAILS
from tests.bank import ReferenceBank
from tests.conftest import Backend, _check_pg, _drop_schema, pg_url_or_skip
from tests.integration.execution_helpers import (
    allowed_action,
    configure_bank_rail,
    execute,
    fast_executor_env,
    wait_for,
)
from tests.integration.helpers import make_world

pytestmark = pytest.mark.pg


@pytest.fixture
def schema_hosts(tmp_path, monkeypatch):
    """Two hosts' settings on one fresh PostgreSQL schema, each with its own (empty) data dir."""
    url = pg_url_or_skip()
    _check_pg(url)
    schema = f"verdict_test_{secrets.token_hex(6)}"
    monkeypatch.setenv(KEK_ENV, new_kek())
    monkeypatch.delenv(KEK_FILE_ENV, raising=False)
    fast_executor_env(monkeypatch)
    try:
        yield [Backend("postgresql", tmp_path / name, url, schema) for name in ("a", "b")]
    finally:
        _drop_schema(url, schema)


def key_files(backend: Backend) -> list[str]:
    return sorted(p.name for p in backend.data_dir.iterdir() if p.name.endswith(".key"))


async def run_on(app, world, bank) -> None:
    """Execute an allowed action with `app` the only host running: its executor opens the rail."""
    async with AsyncTestClient(app=app) as client:
        action_id = await allowed_action(client, world)
        r = await execute(client, world, action_id)
        assert r.status_code == 202, r.text
        done = await wait_for(client, world, r.json()["execution_id"])
        assert done["status"] == "succeeded", done
        assert len(bank.payments_for(action_id)) == 1


async def test_a_rail_secret_written_through_one_host_is_used_by_another(schema_hosts):
    a, b = (create_app(host.settings()) for host in schema_hosts)
    with ReferenceBank() as bank:
        async with AsyncTestClient(app=a) as client_a:
            client_a.app_state = a.state
            world = await make_world(client_a)
            await configure_bank_rail(client_a, world, bank)  # sealed by host a
        await run_on(b, world, bank)  # opened by host b, which has an empty data dir
    assert a.state.keyring.secrets.rails == b.state.keyring.secrets.rails
    assert a.state.keyring.secrets.webhooks == a.state.keyring.secrets.rails  # one key, two features
    assert key_files(schema_hosts[0]) == key_files(schema_hosts[1]) == []


async def test_a_key_file_from_before_the_kek_is_adopted_so_its_secrets_stay_readable(
    schema_hosts, monkeypatch
):
    a, b = schema_hosts
    kek = os.environ[KEK_ENV]
    old = os.urandom(32)  # a data dir from before: the rail feature's own file
    a.data_dir.mkdir(mode=0o700)
    write_secret_file(a.data_dir / LEGACY_FILES[RAILS], base64.b64encode(old).decode() + "\n")
    monkeypatch.delenv(KEK_ENV)  # one host, no KEK yet: its rail secret is sealed under that file
    single = create_app(a.settings())
    with ReferenceBank() as bank:
        async with AsyncTestClient(app=single) as client:
            client.app_state = single.state
            world = await make_world(client)
            await configure_bank_rail(client, world, bank)
        monkeypatch.setenv(KEK_ENV, kek)  # the deployment moves to the KEK, a second host joins
        app_a, app_b = create_app(a.settings()), create_app(b.settings())
        async with AsyncTestClient(app=app_a):
            pass  # host a adopts its file: sealed into the database
        await run_on(app_b, world, bank)  # host b opens the rail a sealed before the KEK
        assert app_a.state.keyring.secrets.rails == app_b.state.keyring.secrets.rails == old
    assert key_files(b) == []
