"""Checkpoints published under a witness quorum, with witnesses as real processes
(`verdict witness serve`, c2sp.org/tlog-witness) on loopback ports: quorum met and not met, a
witness down then back, a split view refused, a witness key rotated. Clients check what they get
with `audit.witness_policy.verify_witnessed` under the policy (c2sp.org/tlog-policy).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cli import main as audit_cli
from audit.errors import WitnessPolicyError
from audit.note import parse_vkey
from audit.proof import consistency_proof
from audit.rfc6962 import hash_leaf, root_hash
from audit.witness_policy import parse_policy, verify_witnessed
from gateway.app import create_app
from gateway.services import witnessing
from tests.integration.helpers import bearer, make_world, pay, read_log
from tests.integration.test_audit_log import verdict_cli
from tests.integration.witnesses import WitnessProcess, policy_text

WAIT_SECONDS = 120.0


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[WitnessProcess]]:
    witnesses = [
        WitnessProcess(tmp_path / name, f"witness.test/{name}") for name in ("alice", "bob", "carol")
    ]
    try:
        for witness in witnesses:
            witness.start()
        yield witnesses
    finally:
        for witness in witnesses:
            witness.stop()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch) -> None:
    monkeypatch.setattr(witnessing, "MAX_BACKOFF_SECONDS", 1.0)


@asynccontextmanager
async def gateway(backend, policy: Path) -> AsyncIterator[AsyncTestClient]:
    app = create_app(backend.settings(witness_policy=policy, checkpoint_interval=0))
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        yield client


async def propose_and_prove(client, world) -> tuple[int, str]:
    """Propose; return the status of the action's proof and its checkpoint (or problem code)."""
    r = await client.post("/v1/agents/ap-bot/propose", json=pay("3.00"), headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/actions/{r.json()['action_id']}/proof", headers=bearer(world.auditor))
    return r.status_code, r.json()["checkpoint"] if r.status_code == 200 else r.json()["code"]


async def proved_eventually(client, world) -> str:
    """A proof once the quorum cosigns again (witnesses in back-off are asked when due)."""
    r = await client.post("/v1/agents/ap-bot/propose", json=pay("4.00"), headers=bearer(world.agent_token))
    action_id = r.json()["action_id"]
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            r = await client.get(f"/v1/actions/{action_id}/proof", headers=bearer(world.auditor))
            if r.status_code == 200:
                return r.json()["checkpoint"]
            assert r.json()["code"] == "checkpoint_not_witnessed", r.text
            await asyncio.sleep(0.2)


async def verify_offline(client, world, policy_file: Path, log_vkey: str, tmp_path: Path) -> None:
    r = await client.post("/v1/agents/ap-bot/propose", json=pay("5.00"), headers=bearer(world.agent_token))
    action_id = r.json()["action_id"]
    strict = tmp_path / "strict-policy"  # all three: carol is down, so no checkpoint meets it
    strict.write_text(policy_file.read_text().replace("group witnesses 2 ", "group witnesses all "))
    for proof_format in ("verdict-proof", "tlog-proof"):
        r = await client.get(
            f"/v1/actions/{action_id}/proof", params={"format": proof_format}, headers=bearer(world.auditor)
        )
        assert r.status_code == 200, r.text
        path = tmp_path / f"proof.{proof_format}"
        path.write_bytes(r.content)
        if proof_format == "tlog-proof":
            assert r.text.startswith("c2sp.org/tlog-proof@v1\nextra ") and r.text.count("tlog-proof@v1") == 2
        assert audit_cli(["verify", str(path), "--vkey", log_vkey]) == 0
        assert audit_cli(["verify", str(path), "--vkey", log_vkey, "--policy", str(policy_file)]) == 0
        assert audit_cli(["verify", str(path), "--vkey", log_vkey, "--policy", str(strict)]) == 1
        tampered = tmp_path / f"tampered.{proof_format}"
        tampered.write_text(
            r.text.replace("\n\n— ", "\n\n— x", 1).replace("— witness.test/alice ", "— nobody ")
        )
        assert audit_cli(["verify", str(tampered), "--vkey", log_vkey, "--policy", str(policy_file)]) == 1


def forked(leaves: list[bytes], keep: int, size: int, signer, origin: str) -> tuple[list[bytes], str]:
    """A branch that keeps the first `keep` leaves and forges the rest up to `size`, signed by the log."""
    branch = leaves[:keep] + [hash_leaf(b"forged %d" % i) for i in range(size - keep)]
    return branch, sign_checkpoint(Checkpoint(origin, size, root_hash(branch)), signer)


def request(old: int, proof: list[bytes], note: str) -> str:
    return f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + note


def size_of(note: str) -> int:
    return int(note.split("\n")[1])


async def test_quorum_outage_recovery_and_split_view(backend, trio, tmp_path) -> None:
    alice, bob, carol = trio
    policy_file = tmp_path / "policy"
    policy_file.write_text(policy_text(trio, 2))
    async with gateway(backend, policy_file) as client:
        world = await make_world(client)
        log_vkey = client.app_state.audit.vkey("acme")
        for witness in trio:
            witness.watch(log_vkey)
        policy = parse_policy(f"log {log_vkey}\n" + policy_file.read_text())

        # all three cosign; the published checkpoint meets the policy
        status, note = await propose_and_prove(client, world)
        assert status == 200, note
        assert set(verify_witnessed(note, policy).cosigned) == {"alice", "bob", "carol"}
        r = await client.get("/v1/tenants/acme/log/checkpoint", headers=bearer(world.auditor))
        assert r.text == note
        # the background rounds publish a new checkpoint with nobody asking for a proof
        await client.post("/v1/agents/ap-bot/propose", json=pay("1.00"), headers=bearer(world.agent_token))
        signed = await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
        async with asyncio.timeout(WAIT_SECONDS):
            while size_of(note) < size_of(signed.text):
                await asyncio.sleep(0.2)
                note = (
                    await client.get("/v1/tenants/acme/log/checkpoint", headers=bearer(world.auditor))
                ).text
        assert set(verify_witnessed(note, policy).cosigned) == {"alice", "bob", "carol"}
        carol_size = size_of(note)  # what carol cosigned last

        # carol down: two of three still publish
        carol.stop()
        status, note = await propose_and_prove(client, world)
        assert status == 200, note
        assert set(verify_witnessed(note, policy).cosigned) == {"alice", "bob"}

        # bob down too: the log accepts entries, but nothing newer is published; /health says why
        bob.stop()
        status, code = await propose_and_prove(client, world)
        assert (status, code) == (503, "checkpoint_not_witnessed")
        published = await client.get("/v1/tenants/acme/log/checkpoint", headers=bearer(world.auditor))
        assert published.text == note
        health = await client.get("/health")
        assert health.status_code == 503
        (problem,) = [p for p in health.json()["problems"] if p["component"] == "witnesses"]
        assert problem["code"] == "witness_quorum_unmet" and "witness.test/bob" not in problem["detail"]
        assert "bob (witness_unreachable" in problem["detail"]

        # bob back: publishing resumes where it stopped, and /health is ok again
        bob.start()
        note = await proved_eventually(client, world)
        assert set(verify_witnessed(note, policy).cosigned) == {"alice", "bob"}
        assert (await client.get("/health")).status_code == 200

        # the offline verifier enforces the policy, on bundles and on c2sp.org/tlog-proof text alike
        await verify_offline(client, world, policy_file, log_vkey, tmp_path)
        published = await client.get("/v1/tenants/acme/log/checkpoint", headers=bearer(world.auditor))
        alice_size = size_of(published.text)  # what alice (and bob) cosigned last

        # a split view: the log's key signs a forked history
        leaves = [hash_leaf(raw) for raw in await read_log(client, world)]
        signer, origin = client.app_state.audit.signer("acme"), client.app_state.audit.origin("acme")
        # alice refuses a fork of the size she cosigned (409, her size) and a longer one (422)
        _, same_size = forked(leaves, alice_size - 1, alice_size, signer, origin)
        r = alice.add_checkpoint(request(alice_size, [], same_size))
        assert (r.status_code, r.headers["content-type"], r.text) == (
            409,
            "text/x.tlog.size",
            f"{alice_size}\n",
        )
        branch, longer = forked(leaves, alice_size - 1, alice_size + 3, signer, origin)
        r = alice.add_checkpoint(
            request(alice_size, consistency_proof(branch, alice_size, alice_size + 3), longer)
        )
        assert r.status_code == 422, r.text
        # carol, down since carol_size, cannot tell the fork from the log: she cosigns it ...
        carol.start()
        branch, fork = forked(leaves, carol_size, alice_size + 3, signer, origin)
        r = carol.add_checkpoint(
            request(carol_size, consistency_proof(branch, carol_size, alice_size + 3), fork)
        )
        assert r.status_code == 200, r.text
        # ... but one cosignature is not the quorum: a client with the policy rejects the fork
        with pytest.raises(WitnessPolicyError, match="quorum"):
            verify_witnessed(fork + r.text, policy)
        # and carol, having cosigned the fork, refuses the real log from then on (the fork shows)
        service = client.app_state.witnessing
        async with asyncio.timeout(WAIT_SECONDS):
            while service.trouble["carol"].code == "witness_unreachable":  # asked once out of back-off
                await propose_and_prove(client, world)
                await asyncio.sleep(0.2)
        assert service.trouble["carol"].code in ("witness_refused", "witness_ahead"), service.trouble


async def test_a_rotated_witness_key_counts_only_once_the_policy_names_it(backend, tmp_path) -> None:
    alice = WitnessProcess(tmp_path / "alice", "witness.test/alice")
    bob = WitnessProcess(tmp_path / "bob", "witness.test/bob")
    try:
        alice.start(), bob.start()
        policy_file = tmp_path / "policy"
        policy_file.write_text(policy_text([alice, bob], 2))
        old_policy = policy_file.read_text()
        async with gateway(backend, policy_file) as client:
            world = await make_world(client)
            log_vkey = client.app_state.audit.vkey("acme")
            alice.watch(log_vkey), bob.watch(log_vkey)
            status, note = await propose_and_prove(client, world)
            assert status == 200, note
            # bob rotates his key: the gateway's policy names the old one, so bob no longer counts
            bob.stop()
            bob.new_key()
            bob.start()
            status, code = await propose_and_prove(client, world)
            assert (status, code) == (503, "checkpoint_not_witnessed")
            assert client.app_state.witnessing.trouble["bob"].code == "witness_bad_cosignature"
        policy_file.write_text(policy_text([alice, bob], 2))  # the deployment adopts bob's new key
        async with gateway(backend, policy_file) as client:
            note = await proved_eventually(client, world)
            verifier = [parse_vkey(log_vkey)]
            assert set(verify_witnessed(note, parse_policy(policy_file.read_text()), verifier).cosigned) == {
                "alice",
                "bob",
            }
            with pytest.raises(WitnessPolicyError):
                verify_witnessed(note, parse_policy(old_policy), verifier)
        # the whole-log check enforces the policy too: the new one holds, the old one does not
        run = verdict_cli(backend, "check", "--tenant", "acme", "--policy", str(policy_file))
        assert run.returncode == 0 and "cosigned by alice, bob" in run.stdout, run.stderr
        (tmp_path / "old-policy").write_text(old_policy)
        run = verdict_cli(backend, "check", "--tenant", "acme", "--policy", str(tmp_path / "old-policy"))
        assert run.returncode == 1 and "FAILED acme" in run.stderr and "quorum" in run.stderr
    finally:
        alice.stop()
        bob.stop()


async def test_a_round_reads_one_consistency_proof_for_the_witnesses_at_one_size(
    backend, trio, tmp_path
) -> None:
    """Witnesses that last cosigned the same size share one proof per round (it was read once per
    witness); each still gets it, and verifies it."""
    policy_file = tmp_path / "policy"
    policy_file.write_text(policy_text(trio, 3))
    async with gateway(backend, policy_file) as client:
        world = await make_world(client)
        audit = client.app_state.audit
        for witness in trio:
            witness.watch(audit.vkey("acme"))
        assert (await propose_and_prove(client, world))[0] == 200  # from size 0: no proof to read
        asked: list[tuple[int, int]] = []
        read_proof = audit.consistency_proof

        async def counted(tenant: str, old: int, new: int) -> list[bytes]:
            asked.append((old, new))
            return await read_proof(tenant, old, new)

        audit.consistency_proof = counted
        status, note = await propose_and_prove(client, world)
        assert status == 200, note
        policy = parse_policy(f"log {audit.vkey('acme')}\n" + policy_file.read_text())
        assert set(verify_witnessed(note, policy).cosigned) == {"alice", "bob", "carol"}
        assert len(asked) == 1 and asked[0][1] == size_of(note)
