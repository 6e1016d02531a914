"""Bundles, checkpoints and consistency proofs from the running gateway, verified by Go's
golang.org/x/mod/sumdb/note and sumdb/tlog (tests/go/verify_bundle.go), an implementation written
outside this project.

Runs when the Go toolchain and Debian's golang-golang-x-mod-dev are present
(`apt-get install golang-go golang-golang-x-mod-dev`); skips otherwise.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.go_programs import build_go
from tests.integration.helpers import bearer, make_world, pay


@pytest.fixture(scope="session")
def go_verifier(tmp_path_factory) -> Path:
    return build_go("verify_bundle", tmp_path_factory.mktemp("go"))


def go(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, check=False)


async def test_go_sumdb_verifies_bundles_checkpoints_and_consistency(client, go_verifier, tmp_path):
    world = await make_world(client)
    keys = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()
    vkey = keys["log"]["vkey"]
    old = tmp_path / "old.checkpoint"
    r = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
    old.write_text(r.text)
    action_ids = []
    for n in range(7):
        r = await client.post(
            "/v1/agents/ap-bot/propose", json=pay(f"{n}.50"), headers=bearer(world.agent_token)
        )
        action_ids.append(r.json()["action_id"])
    for action_id in (action_ids[0], action_ids[-1]):
        r = await client.get(f"/v1/actions/{action_id}/proof", headers=bearer(world.auditor))
        bundle = tmp_path / f"{action_id}.json"
        bundle.write_text(r.text)
        run = go(go_verifier, "bundle", vkey, bundle)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("ok: 2 entries")
    new = tmp_path / "new.checkpoint"
    r = await client.get("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
    new.write_text(r.text)
    old_size, new_size = int(old.read_text().split("\n")[1]), int(new.read_text().split("\n")[1])
    r = await client.get(
        "/v1/tenants/acme/audit/proof/consistency",
        params={"from": old_size, "to": new_size},
        headers=bearer(world.auditor),
    )
    proof = tmp_path / "proof.json"
    proof.write_text(r.text)
    run = go(go_verifier, "consistency", vkey, old, new, proof)
    assert run.returncode == 0, run.stderr

    # Go refuses what it must: an edited entry, a flipped proof hash, another log's key
    data = json.loads(bundle.read_text())
    entry = bytearray(base64.b64decode(data["entries"][0]["entry"]))
    entry[-3] ^= 1
    data["entries"][0]["entry"] = base64.b64encode(bytes(entry)).decode()
    bundle.write_text(json.dumps(data))
    assert go(go_verifier, "bundle", vkey, bundle).returncode == 1
    hashes = json.loads(proof.read_text())
    first = bytearray(base64.b64decode(hashes["proof"][0]))
    first[0] ^= 1
    hashes["proof"][0] = base64.b64encode(bytes(first)).decode()
    proof.write_text(json.dumps(hashes))
    assert go(go_verifier, "consistency", vkey, old, new, proof).returncode == 1
    await make_world(client, tenant="globex")
    globex_admin = (await client.post("/v1/tenants/globex/api-keys", json={"role": "auditor"},
                                      headers=bearer(world.admin_token))).json()["token"]  # fmt: skip
    other = (await client.get("/v1/tenants/globex/keys", headers=bearer(globex_admin))).json()["log"]["vkey"]
    run = go(go_verifier, "consistency", other, old, new, proof)
    assert run.returncode == 1 and "checkpoint" in run.stderr
