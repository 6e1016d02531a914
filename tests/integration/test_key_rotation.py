"""Key rotation end to end, on both backends: old verdicts and checkpoints still verify, new ones use
the new key, the logs record each rotation, and a running gateway switches without a restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from audit import parse_entry, parse_vkey, verify_checkpoint, verify_consistency
from audit.bundle import verify_bundle
from audit.errors import BundleError
from gateway.errors import Conflict
from gateway.services.keys import rotate_key
from tests.integration.helpers import bearer, make_world, pay, read_log
from tests.integration.test_audit_log import b64, database, propose, verdict_cli


async def wait_for(check, seconds: float = 15.0):
    for _ in range(int(seconds / 0.1)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway did not pick up the rotation")


def recover(verdict: dict) -> str:
    return Account.recover_message(
        encode_typed_data(full_message=verdict["typed_data"]), signature=verdict["signature"]
    )


async def test_verdict_key_rotation(client, backend):
    world = await make_world(client)
    before = await propose(client, world)
    old_signer = before["signed_verdict"]["signer"]

    env = {**os.environ, **backend.env()}
    command = [sys.executable, "-m", "gateway.cli", "keys", "rotate"]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert refused.returncode == 2 and "--verdict or --log" in refused.stderr
    done = subprocess.run([*command, "--verdict"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "rotated the verdict key; recorded in the logs of 1 tenant(s)" in done.stdout

    async def two_signers():
        keys = (await client.get("/v1/keys")).json()["verdict_signers"]
        return keys if len(keys) == 2 and keys[1]["status"] == "active" else None

    keys = await wait_for(two_signers)
    assert keys[0]["address"] == old_signer and keys[0]["status"] == "retired" and keys[0]["not_after"]
    assert keys[1]["status"] == "active" and keys[1]["not_after"] is None
    new_signer = keys[1]["address"]
    assert new_signer != old_signer and keys[1]["not_before"] == keys[0]["not_after"]

    async def proposed_after_the_switch():
        # /v1/keys shows the statuses at this moment; from the switch time until this process
        # has swapped its signer (a timer, late under load), the old key refuses: 503, retry
        r = await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay("10.00"), headers=bearer(world.agent_token)
        )
        if r.status_code == 503 and r.json()["code"] == "signing_key_unavailable":
            return None
        assert r.status_code == 201, r.text
        return r.json()

    after = await wait_for(proposed_after_the_switch)
    assert after["signed_verdict"]["signer"] == new_signer == recover(after["signed_verdict"])
    # the verdict signed before still verifies, by the key published as retired after it was issued
    assert recover(before["signed_verdict"]) == old_signer
    assert before["signed_verdict"]["typed_data"]["message"]["issuedAt"] <= _epoch(keys[0]["not_after"])

    log = [parse_entry(raw) for raw in await read_log(client, world)]
    rotated = [e for e in log if e.type == "key.rotated"]
    assert [e.data for e in rotated] == [{"kind": "verdict", "retired": old_signer, "active": new_signer}]

    # both bundles verify against the published signers
    vkey = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()["log"]["vkey"]
    for action in (before, after):
        r = await client.get(f"/v1/actions/{action['action_id']}/proof", headers=bearer(world.auditor))
        verify_bundle(r.json(), vkey, verdict_signers=[k["address"] for k in keys])


async def test_log_key_rotation(client, backend):
    world = await make_world(client)
    action = await propose(client, world)
    keys = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()["log"]
    old_vkey = keys["vkey"]
    assert [h["status"] for h in keys["history"]] == ["active"] and keys["history"][0]["vkey"] == old_vkey
    r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
    first = verify_checkpoint(r.text, parse_vkey(old_vkey))

    async with database(backend) as db:
        rotation = await rotate_key(db, backend.data_dir, "log", "localhost/verdict")
        with pytest.raises(Conflict, match="already scheduled"):  # one switch at a time
            await rotate_key(db, backend.data_dir, "log", "localhost/verdict")
    assert rotation.tenants == ["acme"]

    async def new_key():
        log_keys = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()["log"]
        return log_keys if log_keys["vkey"] != old_vkey else None

    keys = await wait_for(new_key)
    new_vkey = keys["vkey"]
    assert [(h["vkey"], h["status"]) for h in keys["history"]] == [
        (old_vkey, "retired"),
        (new_vkey, "active"),
    ]

    # the log announces the new key, under a checkpoint signed by the old one
    log = [parse_entry(raw) for raw in await read_log(client, world)]
    rotated = next(e for e in log if e.type == "key.rotated")
    assert rotated.data == {"kind": "log", "retired_vkey": old_vkey, "active_vkey": new_vkey}
    r = await client.get(
        "/v1/tenants/acme/audit/checkpoint", params={"size": rotated.seq + 1}, headers=bearer(world.auditor)
    )
    assert r.status_code == 200, r.text
    verify_checkpoint(r.text, parse_vkey(old_vkey))

    # from now on checkpoints are signed by the new key, and consistent with the old ones
    later = await propose(client, world, "20.00")
    r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
    second = verify_checkpoint(r.text, parse_vkey(new_vkey))
    assert second.size > rotated.seq + 1
    r = await client.get(
        "/v1/tenants/acme/audit/proof/consistency",
        params={"from": first.size, "to": second.size},
        headers=bearer(world.auditor),
    )
    verify_consistency(first.size, second.size, first.root_hash, second.root_hash, b64(r.json()["proof"]))

    r = await client.get(f"/v1/actions/{later['action_id']}/proof", headers=bearer(world.auditor))
    bundle = r.json()
    verify_bundle(bundle, [old_vkey, new_vkey])
    try:
        verify_bundle(bundle, old_vkey)
    except BundleError as error:
        assert error.step == "checkpoint"
    else:
        raise AssertionError("a checkpoint signed by the new key verified under the old one")
    r = await client.get(f"/v1/actions/{action['action_id']}/proof", headers=bearer(world.auditor))
    verify_bundle(r.json(), new_vkey)  # older entries are proved under the newest checkpoint

    # the whole-log check knows both keys
    run = verdict_cli(backend, "check")
    assert run.returncode == 0, run.stderr


def _epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
