"""Contract-wallet (EIP-1271) and bulk approvals through the HTTP API, on both backends.

The contract wallet is tests/contracts/OwnerWallet.sol deployed on an in-process py-evm chain
served over JSON-RPC (tests/chain.py); the gateway reaches it through the tenant's `rpc_url`
exactly as it would reach a node. Failing endpoints are real sockets that misbehave.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from audit.bundle import verify_bundle
from tests.chain import silent_rpc, unused_rpc_url
from tests.integration.helpers import bearer, pay, verified_log
from tests.integration.test_approvals import CEO, CFO, CONTROLLER, action, propose, request_for, setup, sign

# A Safe-like 2-of-3 wallet's owners, sorted by address (OwnerWallet wants ascending signers).
OWNERS = sorted(
    (Account.from_key("0x" + f"{n:02x}" * 32) for n in (0x61, 0x62, 0x63)), key=lambda a: int(a.address, 16)
)


def digest_of(typed_data: dict[str, Any]) -> bytes:
    signable = encode_typed_data(full_message=typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def owner_signatures(typed_data: dict[str, Any], *owners: Any) -> str:
    digest = digest_of(typed_data)
    return "0x" + b"".join(bytes(Account.unsafe_sign_hash(digest, o.key).signature) for o in owners).hex()


async def contract_world(client: Any, chain: Any):
    world = await setup(client)
    wallet = chain.deploy_owner_wallet([o.address for o in OWNERS], 2)
    r = await client.patch(
        "/v1/tenants/acme", json={"rpc_url": chain.rpc_url}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/tenants/acme/approvers",
        json={"address": wallet, "roles": ["cfo"], "name": "Treasury Safe", "kind": "contract"},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201 and r.json()["kind"] == "contract", r.text
    return world, wallet


async def test_a_contract_wallet_approves_through_is_valid_signature(client, contract_chain):
    world, wallet = await contract_world(client, contract_chain)
    action_id = (await propose(client, world, pay("7800.00")))["action_id"]
    typed = await request_for(client, action_id, "cfo")
    body = {"approver_role": "cfo", "signer": wallet}

    # one owner is not enough for a 2-of-3 wallet; nor are signatures over another request
    r = await client.post(
        f"/v1/actions/{action_id}/approve", json={**body, "signature": owner_signatures(typed, OWNERS[0])}
    )
    assert r.status_code == 422 and r.json()["code"] == "signature_mismatch", r.text
    rejecting = await request_for(client, action_id, "cfo", approve=False)
    r = await client.post(
        f"/v1/actions/{action_id}/approve",
        json={**body, "signature": owner_signatures(rejecting, OWNERS[0], OWNERS[1])},
    )
    assert r.status_code == 422 and r.json()["code"] == "signature_mismatch"
    # without `signer` the gateway cannot know a wallet signed (a 130-byte signature is no EOA's)
    r = await client.post(
        f"/v1/actions/{action_id}/approve",
        json={"approver_role": "cfo", "signature": owner_signatures(typed, OWNERS[0], OWNERS[2])},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_signature"
    assert (await action(client, world, action_id))["status"] == "pending_approval"

    r = await client.post(
        f"/v1/actions/{action_id}/approve",
        json={**body, "signature": owner_signatures(typed, OWNERS[0], OWNERS[2])},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "allowed" and out["approvals"][0]["address"] == wallet
    assert out["approvals"][0]["kind"] == "contract"
    verdict = out["signed_verdict"]
    assert (
        Account.recover_message(
            encode_typed_data(full_message=verdict["typed_data"]), signature=verdict["signature"]
        )
        == verdict["signer"]
    )
    granted = next(e for e in await verified_log(client, world) if e.type == "approval.granted")
    assert granted.data["kind"] == "contract" and granted.data["digest"] == "0x" + digest_of(typed).hex()
    # the bundle still verifies offline: the digest is checked, the wallet's answer needs the chain
    r = await client.get(f"/v1/actions/{action_id}/proof", headers=bearer(world.auditor))
    vkey = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()["log"]["vkey"]
    assert verify_bundle(r.json(), vkey).meaning_checked["approval.granted"] == 1


async def test_an_unreachable_rpc_refuses_and_never_accepts(client, contract_chain):
    world, wallet = await contract_world(client, contract_chain)
    action_id = (await propose(client, world, pay("7800.00")))["action_id"]
    typed = await request_for(client, action_id, "cfo")
    good = owner_signatures(typed, OWNERS[0], OWNERS[1])
    client.app_state.approvals.signatures.rpc_timeout = 0.5
    with silent_rpc() as silent:
        for url in (unused_rpc_url(), silent):
            r = await client.patch(
                "/v1/tenants/acme", json={"rpc_url": url}, headers=bearer(world.tenant_admin)
            )
            assert r.status_code == 200
            r = await client.post(
                f"/v1/actions/{action_id}/approve",
                json={"approver_role": "cfo", "signer": wallet, "signature": good},
            )
            assert r.status_code == 503 and r.json()["code"] == "signer_unavailable", r.text
            assert int(r.headers["retry-after"]) > 0
            assert url.split("//")[1] not in r.text  # the URL (maybe with an API key) is not echoed
    r = await client.patch("/v1/tenants/acme", json={"rpc_url": None}, headers=bearer(world.tenant_admin))
    r = await client.post(
        f"/v1/actions/{action_id}/approve", json={"approver_role": "cfo", "signer": wallet, "signature": good}
    )
    assert r.status_code == 503 and r.json()["code"] == "signer_unavailable"
    assert (await action(client, world, action_id))["status"] == "pending_approval"
    # the chain is back: the same signature is accepted
    await client.patch(
        "/v1/tenants/acme", json={"rpc_url": contract_chain.rpc_url}, headers=bearer(world.tenant_admin)
    )
    r = await client.post(
        f"/v1/actions/{action_id}/approve", json={"approver_role": "cfo", "signer": wallet, "signature": good}
    )
    assert r.status_code == 200 and r.json()["status"] == "allowed", r.text


async def bulk_request(
    client: Any, role: str, approve: bool, action_ids: list[str], **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        "/v1/tenants/acme/approvals/bulk-request",
        json={"approver_role": role, "approve": approve, "action_ids": action_ids, **extra},
    )
    assert r.status_code == 200, r.text
    return r.json()


def bulk_body(typed: dict[str, Any], signature: str, **extra: Any) -> dict[str, Any]:
    message = typed["message"]
    return {
        "approver_role": message["role"],
        "approve": message["approve"],
        "deadline": message["deadline"],
        "items": [{"action_id": i["actionId"], "action_hash": i["actionHash"]} for i in message["items"]],
        "signature": signature,
        **extra,
    }


async def test_bulk_approval_checks_each_item_as_if_alone(client):
    world = await setup(client)
    small = (await propose(client, world, pay("7800.00")))["action_id"]
    big = (await propose(client, world, pay("60000.00")))["action_id"]
    done = (await propose(client, world, pay("7900.00")))["action_id"]
    typed = await bulk_request(client, "cfo", True, [small, big, done])
    assert typed["primaryType"] == "BulkApproval" and set(typed["types"]) == {
        "EIP712Domain",
        "BulkApproval",
        "ApprovalItem",
    }
    assert [i["actionId"] for i in typed["message"]["items"]] == [small, big, done]
    assert (
        await client.post(
            f"/v1/actions/{done}/approve",
            json={"approver_role": "cfo", "signature": sign(CFO, await request_for(client, done, "cfo"))},
        )
    ).status_code == 200

    r = await client.post(
        "/v1/tenants/acme/approvals/bulk", json=bulk_body(typed, sign(CFO, typed), comment="month-end run")
    )
    assert r.status_code == 200, r.text
    results = {item["action_id"]: item for item in r.json()["results"]}
    assert results[small]["ok"] and results[small]["status"] == "allowed" and results[small]["signed_verdict"]
    assert results[big]["ok"] and results[big]["status"] == "pending_approval"
    assert not results[done]["ok"] and results[done]["code"] == "action_not_pending"
    # the same signer's single approval of `big` counts once: already answered through the bulk
    r = await client.post(
        f"/v1/actions/{big}/approve",
        json={"approver_role": "cfo", "signature": sign(CFO, await request_for(client, big, "cfo"))},
    )
    assert r.status_code == 409 and r.json()["code"] == "already_answered"
    # bulk entries carry the bulk typed data, and the bundle's meaning checks accept them
    entries = [
        e
        for e in await verified_log(client, world)
        if e.type == "approval.granted" and e.action_id in (small, big)
    ]
    assert {e.data["typed_data"]["primaryType"] for e in entries} == {"BulkApproval"}
    r = await client.get(f"/v1/actions/{small}/proof", headers=bearer(world.auditor))
    vkey = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()["log"]["vkey"]
    assert verify_bundle(r.json(), vkey).meaning_checked == {
        "action.proposed": 1,
        "approval.granted": 1,
        "verdict.issued": 1,
    }


async def test_bulk_refusals(client):
    world = await setup(client)
    first = (await propose(client, world, pay("7800.00")))["action_id"]
    second = (await propose(client, world, pay("60000.00")))["action_id"]
    typed = await bulk_request(client, "cfo", True, [first, second])
    # an item whose hash was changed after signing, and a reordered list: the signature no longer fits
    tampered = bulk_body(typed, sign(CFO, typed))
    tampered["items"] = tampered["items"][::-1]
    r = await client.post("/v1/tenants/acme/approvals/bulk", json=tampered)
    assert r.status_code == 403 and r.json()["code"] == "not_an_approver"  # recovers to nobody we know
    r = await client.post("/v1/tenants/acme/approvals/bulk", json={**tampered, "signer": CFO.address})
    assert r.status_code == 422 and r.json()["code"] == "signature_mismatch"
    # a signer without the role; a deadline in the past; a role the actions do not need
    r = await client.post("/v1/tenants/acme/approvals/bulk", json=bulk_body(typed, sign(CONTROLLER, typed)))
    assert r.status_code == 403 and r.json()["code"] == "role_not_held"
    old = await bulk_request(client, "cfo", True, [first], deadline=1_000_000)
    r = await client.post("/v1/tenants/acme/approvals/bulk", json=bulk_body(old, sign(CFO, old)))
    assert r.status_code == 409 and r.json()["code"] == "approval_window_expired"
    r = await client.post(
        "/v1/tenants/acme/approvals/bulk-request",
        json={"approver_role": "ceo", "approve": True, "action_ids": [first]},
    )
    assert r.status_code == 422 and r.json()["code"] == "role_not_required"
    # the CEO may approve `second` in bulk, while `first` (cfo only) is refused item by item
    ceo = await bulk_request(client, "ceo", True, [second])
    mixed = bulk_body(ceo, "0x")
    mixed["items"].append(
        {"action_id": first, "action_hash": (await action(client, world, first))["action_hash"]}
    )
    mixed["deadline"] = ceo["message"]["deadline"]
    typed_mixed = {
        **ceo,
        "message": {
            **ceo["message"],
            "items": [
                *ceo["message"]["items"],
                {"actionId": first, "actionHash": mixed["items"][1]["action_hash"]},
            ],
        },
    }
    mixed["signature"] = sign(CEO, typed_mixed)
    r = await client.post("/v1/tenants/acme/approvals/bulk", json=mixed)
    assert r.status_code == 200, r.text
    results = {item["action_id"]: item for item in r.json()["results"]}
    assert results[second]["ok"] and results[second]["status"] == "pending_approval"
    assert results[first]["code"] == "role_not_required"
    # duplicates and empty lists are refused before any signature check
    r = await client.post("/v1/tenants/acme/approvals/bulk", json={**bulk_body(typed, "0x00"), "items": []})
    assert r.status_code == 400 and r.json()["code"] == "invalid_items"
    assert (await action(client, world, first))["status"] == "pending_approval"
