"""Keys across hosts (issue 11, item 3): real `verdict serve` processes on one PostgreSQL schema,
each with its own data dir. One deployment signs with one verdict signer and one log key; a host
with other keys, or without the published ones, refuses to start; rotations reach every host;
the bootstrap admin token is created once per database and never revoked by a later start."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from audit import parse_vkey, verify_checkpoint
from gateway.keyring import ensure_local_keys
from gateway.sealing import new_kek
from tests.conftest import _check_pg, _drop_schema, pg_url_or_skip
from tests.integration.helpers import bearer, make_world, pay
from tests.integration.process import GatewayProcess

pytestmark = pytest.mark.pg


@pytest.fixture
def deployment(tmp_path: Path):
    """A fresh PostgreSQL schema, and a way to run hosts on it (each with its own data dir)."""
    url = pg_url_or_skip()
    _check_pg(url)
    schema = f"verdict_test_{secrets.token_hex(6)}"
    hosts: list[GatewayProcess] = []

    class Deployment:
        def env(self, name: str, kek: str | None = None) -> dict[str, str]:
            return {
                "VERDICT_DATABASE_URL": url,
                "VERDICT_DATABASE_SCHEMA": schema,
                "VERDICT_DATA_DIR": str(tmp_path / name),
                "VERDICT_KEY_ENCRYPTION_KEY": kek or "",
                "VERDICT_KEY_ENCRYPTION_KEY_FILE": "",
                "VERDICT_CHECKPOINT_INTERVAL": "0.2",
                "VERDICT_ACCESS_LOG": "0",
            }

        def start(self, name: str, kek: str | None = None) -> GatewayProcess:
            return self.start_together([name], kek)[0]

        def start_together(self, names: list[str], kek: str | None = None) -> list[GatewayProcess]:
            """Start one host per name at the same moment (as `docker compose --scale` does)."""
            started = [GatewayProcess(self.env(name, kek)) for name in names]
            hosts.extend(started)
            with ThreadPoolExecutor(len(started)) as pool:
                return list(pool.map(lambda host: host.start(timeout=90), started))

        def refused(self, name: str, kek: str | None = None) -> subprocess.CompletedProcess:
            """Start a host expected to refuse: it must exit by itself, not serve."""
            env = {**os.environ, **self.env(name, kek), "VERDICT_PORT": "0"}
            command = [sys.executable, "-m", "gateway.cli", "serve"]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

        def cli(self, name: str, *args: str, kek: str | None = None) -> subprocess.CompletedProcess:
            env = {**os.environ, **self.env(name, kek)}
            command = [sys.executable, "-m", "gateway.cli", *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

        def data_dir(self, name: str) -> Path:
            return tmp_path / name

    try:
        yield Deployment()
    finally:
        for host in hosts:
            host.stop()
        _drop_schema(url, schema)


def client_of(host: GatewayProcess, admin_token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=host.url, timeout=30)
    client.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin_token))
    return client


def admin_token_of(data_dir: Path) -> str:
    return (data_dir / "admin.token").read_text().strip()


async def published(host: GatewayProcess, world) -> tuple[list, str]:
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as client:
        signers = (await client.get("/v1/keys")).json()["verdict_signers"]
        r = await client.get(f"/v1/tenants/{world.tenant}/keys", headers=bearer(world.auditor))
        assert r.status_code == 200, r.text
        return signers, r.json()["log"]["vkey"]


async def propose_on(host: GatewayProcess, world, amount: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as client:
        return await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=bearer(world.agent_token)
        )


def recover(verdict: dict) -> str:
    return Account.recover_message(
        encode_typed_data(full_message=verdict["typed_data"]), signature=verdict["signature"]
    )


async def wait_until(check, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("the hosts did not converge in time")


async def test_three_hosts_with_one_kek_sign_with_one_key_set_and_follow_rotations(deployment):
    kek = new_kek()
    hosts = [deployment.start(name, kek) for name in ("a", "b", "c")]
    # the first host created the admin token; the later ones neither made nor replaced one
    admin = admin_token_of(deployment.data_dir("a"))
    for name in ("b", "c"):
        assert sorted(p.name for p in deployment.data_dir(name).iterdir()) == [], "no key file, no token"
    async with client_of(hosts[1], admin) as client:
        world = await make_world(client)  # the admin token of host a works on host b
    async with client_of(hosts[2], admin) as client:
        r = await client.post("/v1/tenants", json={"id": "other", "name": "Other"}, headers=bearer(admin))
        assert r.status_code == 201, r.text

    views = [await published(host, world) for host in hosts]
    assert views[0] == views[1] == views[2]
    signers, vkey = views[0]
    assert [s["status"] for s in signers] == ["active"]

    # verdicts from every host are signed by the one published signer
    for n, host in enumerate(hosts):
        r = await propose_on(host, world, f"{n + 1}.00")
        assert r.status_code == 201, r.text
        assert recover(r.json()["signed_verdict"]) == signers[0]["address"]

    # checkpoints (made by whichever host integrates) verify under the one vkey, and the whole
    # log checks from every host's data dir
    async with client_of(hosts[2], admin) as client:
        r = await client.post(f"/v1/tenants/{world.tenant}/audit/checkpoint", headers=bearer(world.auditor))
        assert r.status_code == 200, r.text
        verify_checkpoint(r.text, parse_vkey(vkey))
    for name in ("a", "b", "c"):
        run = deployment.cli(name, "audit", "check", kek=kek)
        assert run.returncode == 0, run.stderr
        assert f"OK  {world.tenant}:" in run.stdout

    # a verdict-key rotation made on host c reaches a and b
    run = deployment.cli("c", "keys", "rotate", "--verdict", kek=kek)
    assert run.returncode == 0, run.stderr
    assert "sealed in the database" in run.stdout

    async def switched():
        views = [await published(host, world) for host in hosts]
        signers = views[0][0]
        done = len(signers) == 2 and signers[1]["status"] == "active"
        return views if done and views[0] == views[1] == views[2] else None

    signers = (await wait_until(switched))[0][0]
    assert signers[0]["status"] == "retired" and signers[0]["not_after"] == signers[1]["not_before"]
    for host in hosts:
        r = await propose_on(host, world, "3.00")
        assert r.status_code == 201, r.text
        assert recover(r.json()["signed_verdict"]) == signers[1]["address"]

    # a log-key rotation made on host b: every host checkpoints with the new key afterwards
    run = deployment.cli("b", "keys", "rotate", "--log", kek=kek)
    assert run.returncode == 0, run.stderr

    async def new_vkey():
        views = [await published(host, world) for host in hosts]
        return views[0][1] if views[0][1] != vkey and views[0] == views[1] == views[2] else None

    later = await wait_until(new_vkey)
    for host in hosts:
        assert (await propose_on(host, world, "4.00")).status_code == 201
        async with client_of(host, admin) as client:
            r = await client.post(
                f"/v1/tenants/{world.tenant}/audit/checkpoint", headers=bearer(world.auditor)
            )
            assert r.status_code == 200, r.text
            verify_checkpoint(r.text, parse_vkey(later))
    run = deployment.cli("a", "audit", "check", kek=kek)
    assert run.returncode == 0, run.stderr

    # the admin token of the first host still works everywhere: no later start revoked it
    for host in hosts:
        async with client_of(host, admin) as client:
            r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(admin))
            assert r.status_code == 200, r.text


async def test_a_host_without_the_published_keys_or_with_foreign_ones_refuses_to_start(deployment):
    first = deployment.start("a")  # no KEK: keys in a's data dir, published in the database
    admin = admin_token_of(deployment.data_dir("a"))
    async with client_of(first, admin) as client:
        world = await make_world(client)
    signers, vkey = await published(first, world)

    # without the published keys (an empty data dir): refused, and nothing created
    run = deployment.refused("b")
    assert run.returncode != 0
    assert "does not hold the signing keys this deployment's database publishes" in run.stderr
    assert signers[0]["address"] in run.stderr and "VERDICT_KEY_ENCRYPTION_KEY" in run.stderr
    assert "docs/deployment.md" in run.stderr
    assert not (deployment.data_dir("b") / "keys.json").exists()
    assert not (deployment.data_dir("b") / "admin.token").exists()

    # with keys of its own (foreign to this database): refused
    ensure_local_keys(deployment.data_dir("c"))
    run = deployment.refused("c")
    assert run.returncode != 0
    assert "holds signing keys that this deployment's database does not publish" in run.stderr
    assert "VERDICT_KEY_ENCRYPTION_KEY" in run.stderr

    # ... and with a KEK too: foreign files are refused whatever the KEK
    kek = new_kek()
    run = deployment.refused("c", kek)
    assert run.returncode != 0 and "does not publish" in run.stderr

    # the refused starts revoked nothing
    async with client_of(first, admin) as client:
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(admin))
        assert r.status_code == 200, r.text

    # moving to shared keys: restart the first host with the KEK (it seals its keys), then a
    # second host with the KEK and an empty data dir starts with the same keys
    first.stop()
    first = deployment.start("a", kek)
    second = deployment.start("b", kek)
    assert await published(second, world) == (signers, vkey) == await published(first, world)
    async with client_of(second, admin) as client:
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(admin))
        assert r.status_code == 200, r.text

    # once sealed, a host without the KEK is told to use it
    run = deployment.refused("e")
    assert run.returncode != 0
    assert "start this host with the same VERDICT_KEY_ENCRYPTION_KEY as the others" in run.stderr

    # a host with another KEK cannot open them: refused
    run = deployment.refused("d", new_kek())
    assert run.returncode != 0
    assert "do not open with this host's VERDICT_KEY_ENCRYPTION_KEY" in run.stderr


async def test_a_host_that_misses_a_rotation_stops_signing_instead_of_using_the_retired_key(deployment):
    """Without a KEK, two hosts with copies of one data dir share keys until a rotation: the
    host that did not make it cannot load the new key, so from the switch on it refuses to sign
    (503) rather than sign with the retired one, and it refuses to start again."""
    first = deployment.start("a")
    shutil.copytree(deployment.data_dir("a"), deployment.data_dir("b"))
    second = deployment.start("b")
    admin = admin_token_of(deployment.data_dir("a"))
    async with client_of(second, admin) as client:
        world = await make_world(client)
    assert (await propose_on(second, world, "1.00")).status_code == 201

    run = deployment.cli("a", "keys", "rotate", "--verdict")
    assert run.returncode == 0, run.stderr

    async def switched():
        signers, _ = await published(second, world)
        return signers if len(signers) == 2 and signers[1]["status"] == "active" else None

    signers = await wait_until(switched)
    r = await propose_on(second, world, "2.00")
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "signing_key_unavailable" and r.headers["retry-after"]
    r = await propose_on(first, world, "3.00")
    assert r.status_code == 201, r.text
    assert recover(r.json()["signed_verdict"]) == signers[1]["address"]

    second.stop()
    run = deployment.refused("b")
    assert run.returncode != 0 and "does not hold the signing keys" in run.stderr


async def test_replicas_started_at_once_on_a_new_database_agree_on_one_key_set(deployment):
    """`docker compose up --scale gateway=3`: three replicas with one KEK and one shared data dir
    volume start at the same moment on an empty database."""
    kek = new_kek()
    hosts = deployment.start_together(["shared", "shared", "shared"], kek)
    admin = admin_token_of(deployment.data_dir("shared"))
    async with client_of(hosts[0], admin) as client:
        world = await make_world(client)
    views = [await published(host, world) for host in hosts]
    assert views[0] == views[1] == views[2] and len(views[0][0]) == 1
    assert sorted(p.name for p in deployment.data_dir("shared").iterdir()) == ["admin.token"]
    for host in hosts:
        async with client_of(host, admin) as client:
            r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(admin))
            assert r.status_code == 200, r.text
