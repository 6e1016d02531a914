"""The published keys and the bootstrap admin token on one host, both backends: a restart keeps
them, a data dir that lost its keys refuses to start instead of minting new ones, and the admin
token is created once per database (replaced only by `verdict keys admin-token --reset`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.keyring import read_admin_token, write_admin_token
from gateway.services.published_keys import KeysRefused
from tests.integration.helpers import bearer, make_world


def started(backend):
    app = create_app(backend.settings())
    client = AsyncTestClient(app=app)
    client.app_state = app.state
    return client


def refusal_of(excinfo: pytest.ExceptionInfo) -> KeysRefused:
    error = excinfo.value
    while isinstance(error, BaseExceptionGroup):  # the lifespan may wrap it in a task group
        error = error.exceptions[0]
    assert isinstance(error, KeysRefused), repr(error)
    return error


async def test_a_data_dir_that_lost_its_keys_refuses_to_start_instead_of_minting_new_ones(backend):
    async with started(backend) as client:
        signer = (await client.get("/v1/keys")).json()["verdict_signers"][0]["address"]
    for name in ("keys.json", "verdict-signer.key", "log-signer.pem"):
        (backend.data_dir / name).unlink()
    with pytest.raises(BaseException) as excinfo:
        async with started(backend):
            pass
    message = str(refusal_of(excinfo))
    assert "does not hold the signing keys this deployment's database publishes" in message
    assert signer in message and "VERDICT_KEY_ENCRYPTION_KEY" in message
    assert not (backend.data_dir / "keys.json").exists()  # it made no key of its own


async def test_a_restart_never_replaces_the_bootstrap_admin_token(backend):
    async with started(backend) as client:
        world = await make_world(client)
    write_admin_token(backend.data_dir)  # another token in the file: not the database's
    stranger = read_admin_token(backend.data_dir)
    async with started(backend) as client:
        assert client.app_state.keyring.admin_token is None
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(world.admin_token))
        assert r.status_code == 200, r.text
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(stranger))
        assert r.status_code == 401


async def test_admin_token_reset_replaces_it_everywhere(backend):
    async with started(backend) as client:
        world = await make_world(client)
        env = {**os.environ, **backend.env()}
        command = [sys.executable, "-m", "gateway.cli", "keys", "admin-token", "--reset"]
        run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        assert run.returncode == 0, run.stderr
        assert "admin.token" in run.stdout
        fresh = read_admin_token(backend.data_dir)
        assert fresh != world.admin_token and fresh not in run.stdout
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(world.admin_token))
        assert r.status_code == 401
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(fresh))
        assert r.status_code == 200, r.text
