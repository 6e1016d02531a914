"""Wallet approvals of escalated actions, end to end through the HTTP API, on both backends.

Approvers sign with eth-account (an implementation independent of the gateway's encoder) the
typed data the gateway hands out; every refusal leaves the action and its log unchanged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from litestar.testing import AsyncTestClient

from audit.bundle import verify_bundle
from gateway.app import create_app
from gateway.ledger import Ledger
from gateway.services import lifecycle
from tests.integration.helpers import bearer, make_world, pay, read_log, verified_log

POLICY = """\
schema: verdict.policy/v1
default: DENY
verdict_ttl_seconds: 120
rules:
  - id: cfo-over-5k
    decision: ESCALATE
    reason: amount_above_threshold
    match: {action.type: {eq: pay_invoice}, action.amount: {gt: "5000", lte: "50000"}}
    approvals: {threshold: 1, roles: [cfo]}
    timeout_minutes: 60
  - id: execs-over-50k
    decision: ESCALATE
    reason: amount_above_exec_threshold
    match: {action.type: {eq: pay_invoice}, action.amount: {gt: "50000"}}
    approvals: {threshold: 2, roles: [cfo, controller, ceo]}
  - id: dual-control-wires
    decision: ESCALATE
    reason: wire_needs_dual_control
    match: {action.type: {eq: wire}}
    approvals: {all_of: [{role: cfo, min: 1}, {role: controller, min: 1}]}
  - id: allow-rest
    decision: ALLOW
    match: {action.type: {eq: pay_invoice}}
"""

# Deterministic wallets (well-known test keys; never use them for anything real).
CFO = Account.from_key("0x" + "11" * 32)
CONTROLLER = Account.from_key("0x" + "22" * 32)
CEO = Account.from_key("0x" + "33" * 32)
BOTH = Account.from_key("0x" + "44" * 32)  # cfo and controller
STRANGER = Account.from_key("0x" + "55" * 32)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


async def setup(client: Any, tenant: str = "acme"):
    world = await make_world(client, tenant=tenant, policy=POLICY, chain_id=8453)
    for account, roles, name in (
        (CFO, ["cfo"], "Carla CFO"),
        (CONTROLLER, ["controller"], "Colin Controller"),
        (CEO, ["ceo"], "Erin CEO"),
        (BOTH, ["cfo", "controller"], "Dana Deputy"),
    ):
        r = await client.post(
            f"/v1/tenants/{tenant}/approvers",
            json={"address": account.address, "roles": roles, "name": name},
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 201, r.text
    return world


async def propose(client: Any, world: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=body, headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text
    return r.json()


async def request_for(client: Any, action_id: str, role: str, approve: bool = True) -> dict[str, Any]:
    r = await client.get(
        f"/v1/actions/{action_id}/approval-request", params={"role": role, "approve": str(approve).lower()}
    )
    assert r.status_code == 200, r.text
    return r.json()


def sign(account: Any, typed_data: dict[str, Any]) -> str:
    return "0x" + account.sign_typed_data(full_message=typed_data).signature.hex().removeprefix("0x")


async def answer(
    client: Any,
    action_id: str,
    account: Any,
    role: str,
    approve: bool = True,
    *,
    signature: str | None = None,
    **extra: Any,
):
    if signature is None:
        signature = sign(account, await request_for(client, action_id, role, approve))
    path = "approve" if approve else "reject"
    return await client.post(
        f"/v1/actions/{action_id}/{path}", json={"approver_role": role, "signature": signature, **extra}
    )


async def action(client: Any, world: Any, action_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/actions/{action_id}", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    return r.json()


async def log_size(client: Any, world: Any) -> int:
    return len(await read_log(client, world))


def recover(typed_data: dict[str, Any], signature: str) -> str:
    return Account.recover_message(encode_typed_data(full_message=typed_data), signature=signature)


async def test_one_cfo_approval_allows_and_issues_one_verdict_that_eth_account_verifies(client):
    world = await setup(client)
    proposed = await propose(client, world, pay("7800.00"))
    assert proposed["decision"] == "ESCALATE"
    action_id = proposed["action_id"]

    typed = await request_for(client, action_id, "cfo")
    assert typed["primaryType"] == "Approval"
    assert set(typed["types"]) == {"EIP712Domain", "Approval"}
    assert typed["domain"]["chainId"] == 8453 and typed["domain"]["name"] == "Verdict Gateway"
    message = typed["message"]
    assert message["actionId"] == action_id and message["actionHash"] == proposed["action_hash"]
    assert message["tenant"] == "acme" and message["role"] == "cfo" and message["approve"] is True
    assert message["summary"] == "pay invoice of 7,800.00 USDC to acme-supplies"
    record = await action(client, world, action_id)
    assert record["summary"] == message["summary"]
    # the window is the rule's timeout: 60 minutes after the proposal
    assert message["expiresAt"] == int(
        __import__("datetime")
        .datetime.fromisoformat(record["approval_expires_at"].replace("Z", "+00:00"))
        .timestamp()
    )

    r = await answer(client, action_id, CFO, "cfo", comment="checked against PO 4471")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["decision"] == "ALLOW" and out["status"] == "allowed" and out["missing"] == []
    assert [(a["address"], a["role"], a["approve"]) for a in out["approvals"]] == [(CFO.address, "cfo", True)]
    verdict = out["signed_verdict"]
    assert recover(verdict["typed_data"], verdict["signature"]) == verdict["signer"]
    keys = (await client.get("/v1/keys")).json()
    assert verdict["signer"] == keys["verdict_signers"][-1]["address"]
    vm = verdict["typed_data"]["message"]
    assert vm["actionId"] == action_id and vm["actionHash"] == proposed["action_hash"]
    assert vm["decision"] == 1 and vm["policyVersion"] == 1 and vm["expiresAt"] - vm["issuedAt"] == 120

    r = await client.get(f"/v1/actions/{action_id}/verdict", headers=bearer(world.agent_token))
    assert r.status_code == 200 and r.json() == verdict
    record = await action(client, world, action_id)
    assert record["status"] == "allowed" and record["decision"] == "ALLOW" and record["decided_at"]
    assert record["approvals"][0]["comment"] == "checked against PO 4471"
    assert record["signed_verdict"] == verdict

    # the log: the approval carries the signature and digest, then exactly one verdict
    entries = await verified_log(client, world)
    mine = [e for e in entries if e.action_id == action_id]
    assert [e.type for e in mine] == ["action.proposed", "approval.granted", "verdict.issued"]
    granted = mine[1].data
    assert granted["signer"] == CFO.address and granted["signature"] == out_signature(entries, action_id)
    assert recover(granted["typed_data"], granted["signature"]) == CFO.address
    assert granted["digest"] == "0x" + encode_digest(granted["typed_data"])
    assert granted["outcome"] == "allowed" and granted["request"]["request_id"]
    assert record["audit_event_ids"] == [e.seq for e in mine]

    # the proof bundle covers the approval and verdict, and its meaning checks pass offline
    r = await client.get(f"/v1/actions/{action_id}/proof", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    vkey = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()["log"]["vkey"]
    verified = verify_bundle(r.json(), vkey, verdict_signers=[verdict["signer"]])
    assert verified.meaning_checked == {"action.proposed": 1, "approval.granted": 1, "verdict.issued": 1}


def out_signature(entries: list[Any], action_id: str) -> str:
    return next(
        e.data["signature"] for e in entries if e.action_id == action_id and e.type == "approval.granted"
    )


def encode_digest(typed_data: dict[str, Any]) -> str:
    from eth_utils import keccak

    signable = encode_typed_data(full_message=typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body).hex()


async def test_two_of_three_needs_two_distinct_signers(client):
    world = await setup(client)
    action_id = (await propose(client, world, pay("60000.00")))["action_id"]
    r = await answer(client, action_id, CFO, "cfo")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending_approval" and r.json()["signed_verdict"] is None
    assert r.json()["missing"] == ["1 more of cfo, controller, ceo"]
    r = await answer(client, action_id, CFO, "cfo")
    assert r.status_code == 409 and r.json()["code"] == "already_answered"
    late = sign(CONTROLLER, await request_for(client, action_id, "controller"))
    r = await answer(client, action_id, CEO, "ceo")
    assert r.status_code == 200 and r.json()["status"] == "allowed"
    assert {a["address"] for a in r.json()["approvals"]} == {CFO.address, CEO.address}
    r = await answer(client, action_id, CONTROLLER, "controller", signature=late)
    assert r.status_code == 409 and r.json()["code"] == "action_not_pending"
    assert r.json()["action_status"] == "allowed"
    entries = await verified_log(client, world)
    assert [e.type for e in entries if e.action_id == action_id].count("verdict.issued") == 1


async def test_all_of_counts_a_multi_role_signer_once(client):
    world = await setup(client)
    proposed = await propose(
        client, world, {"action": {"type": "wire", "amount": "250000.00", "asset": "USD"}}
    )
    action_id = proposed["action_id"]
    assert proposed["approvals_required"] == [
        {
            "rule": "dual-control-wires",
            "all_of": [{"role": "cfo", "min": 1}, {"role": "controller", "min": 1}],
        }
    ]
    r = await answer(client, action_id, BOTH, "cfo")
    assert r.status_code == 200 and r.json()["missing"] == ["1 more controller"]
    r = await answer(client, action_id, BOTH, "controller")  # the same person cannot fill both seats
    assert r.status_code == 409 and r.json()["code"] == "already_answered"
    r = await answer(client, action_id, CONTROLLER, "controller")
    assert r.status_code == 200 and r.json()["status"] == "allowed"


async def test_a_rejection_ends_the_action(client):
    world = await setup(client)
    action_id = (await propose(client, world, pay("60000.00")))["action_id"]
    assert (await answer(client, action_id, CFO, "cfo")).status_code == 200
    r = await answer(client, action_id, CONTROLLER, "controller", approve=False, reason="duplicate invoice")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["decision"] == "DENY"
    record = await action(client, world, action_id)
    assert record["status"] == "rejected" and record["reason"] == "rejected"
    assert record["approvals"][1]["comment"] == "duplicate invoice"
    r = await answer(client, action_id, CEO, "ceo", signature="0x" + "11" * 65)
    assert r.status_code == 409 and r.json()["action_status"] == "rejected"
    r = await client.get(f"/v1/actions/{action_id}/verdict", headers=bearer(world.agent_token))
    assert r.status_code == 409 and r.json()["code"] == "verdict_not_available"
    types = [e.type for e in await verified_log(client, world) if e.action_id == action_id]
    assert types == ["action.proposed", "approval.granted", "approval.rejected"]


async def test_signatures_with_v_0_or_1_are_accepted(client):
    world = await setup(client)
    action_id = (await propose(client, world, pay("7800.00")))["action_id"]
    signature = bytearray(bytes.fromhex(sign(CFO, await request_for(client, action_id, "cfo"))[2:]))
    signature[64] -= 27
    r = await answer(client, action_id, CFO, "cfo", signature="0x" + signature.hex())
    assert r.status_code == 200 and r.json()["status"] == "allowed"


async def refused(client: Any, world: Any, action_id: str, response: Any, status: int, code: str) -> dict:
    """Assert the refusal and that nothing changed."""
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["code"] == code, problem
    assert response.headers["content-type"].startswith("application/problem+json")
    record = await action(client, world, action_id)
    assert record["status"] == "pending_approval" and record["approvals"] == []
    return problem


async def test_every_refusal_has_its_own_code_and_changes_nothing(client):
    world = await setup(client)
    action_id = (await propose(client, world, pay("7800.00")))["action_id"]
    other_id = (await propose(client, world, pay("7900.00")))["action_id"]
    size = await log_size(client, world)
    good = sign(CFO, await request_for(client, action_id, "cfo"))

    # a signer who is not an approver of this tenant
    r = await answer(client, action_id, STRANGER, "cfo")
    await refused(client, world, action_id, r, 403, "not_an_approver")
    # an approver without the role
    r = await answer(client, action_id, CONTROLLER, "cfo")
    await refused(client, world, action_id, r, 403, "role_not_held")
    # a role this action does not need
    r = await client.get(f"/v1/actions/{action_id}/approval-request", params={"role": "ceo"})
    assert r.status_code == 422 and r.json()["code"] == "role_not_required"
    r = await answer(client, action_id, CEO, "ceo", signature=good)
    await refused(client, world, action_id, r, 422, "role_not_required")
    # a signature over another action, with and without naming the signer
    other = sign(CFO, await request_for(client, other_id, "cfo"))
    r = await answer(client, action_id, CFO, "cfo", signature=other, signer=CFO.address)
    await refused(client, world, action_id, r, 422, "signature_mismatch")
    r = await answer(client, action_id, CFO, "cfo", signature=other)
    await refused(client, world, action_id, r, 403, "not_an_approver")
    # a signature over the other answer (reject), sent as an approval
    rejecting = sign(CFO, await request_for(client, action_id, "cfo", approve=False))
    r = await answer(client, action_id, CFO, "cfo", signature=rejecting)
    problem = await refused(client, world, action_id, r, 422, "signature_mismatch")
    assert "approve=false" in problem["detail"]
    # a signature for another domain (chain id) and another tenant
    typed = await request_for(client, action_id, "cfo")
    for change in (
        {"domain": {**typed["domain"], "chainId": 1}},
        {"message": {**typed["message"], "tenant": "zeta"}},
    ):
        forged = sign(CFO, {**typed, **change})
        r = await answer(client, action_id, CFO, "cfo", signature=forged, signer=CFO.address)
        await refused(client, world, action_id, r, 422, "signature_mismatch")
    # malformed signatures: not hex, too short, bad v, the high-s twin (EIP-2)
    raw = bytes.fromhex(good[2:])
    s = int.from_bytes(raw[32:64], "big")
    high_s = raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([raw[64] ^ 1])
    for bad in ("0xzz", good[:-2], good[:-2] + "1d", "0x" + high_s.hex(), "0x"):
        r = await answer(client, action_id, CFO, "cfo", signature=bad)
        await refused(client, world, action_id, r, 422, "invalid_signature")
    # an action that is not pending, and one that does not exist
    allowed = (await propose(client, world, pay("100.00")))["action_id"]
    r = await client.get(f"/v1/actions/{allowed}/approval-request", params={"role": "cfo"})
    assert r.status_code == 409 and r.json()["code"] == "action_not_pending"
    assert r.json()["action_status"] == "allowed"
    r = await client.post("/v1/actions/act_nope/approve", json={"approver_role": "cfo", "signature": good})
    assert r.status_code == 404 and r.json()["code"] == "action_not_found"
    # unknown fields in the body
    r = await client.post(
        f"/v1/actions/{action_id}/approve", json={"approver_role": "cfo", "signature": good, "typed_data": {}}
    )
    assert r.status_code == 400 or r.status_code == 422
    assert await log_size(client, world) == size + 2  # only the ALLOW proposal and its verdict
    # and the good signature still works afterwards
    r = await answer(client, action_id, CFO, "cfo", signature=good)
    assert r.status_code == 200 and r.json()["status"] == "allowed"


async def test_a_removed_approver_cannot_approve_but_their_approval_stands(client):
    world = await setup(client)
    first = (await propose(client, world, pay("60000.00")))["action_id"]
    second = (await propose(client, world, pay("7800.00")))["action_id"]
    assert (await answer(client, first, CFO, "cfo")).status_code == 200
    r = await client.delete(f"/v1/tenants/acme/approvers/{CFO.address}", headers=bearer(world.tenant_admin))
    assert r.status_code == 200 and r.json()["removed_at"]
    r = await answer(client, second, CFO, "cfo")
    assert r.status_code == 403 and r.json()["code"] == "not_an_approver"
    r = await answer(client, first, CEO, "ceo")  # CFO's earlier approval still counts
    assert r.status_code == 200 and r.json()["status"] == "allowed"
    # roles can change; the changes and the removal are audited
    r = await client.patch(
        f"/v1/tenants/acme/approvers/{CEO.address}",
        json={"roles": ["ceo", "cfo"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 200 and r.json()["roles"] == ["ceo", "cfo"]
    assert (await answer(client, second, CEO, "cfo")).json()["status"] == "allowed"
    types = [e.type for e in await verified_log(client, world)]
    assert "approver.removed" in types and "approver.changed" in types
    listed = (await client.get("/v1/tenants/acme/approvers", headers=bearer(world.auditor))).json()
    assert CFO.address not in {a["address"] for a in listed}
    listed = (
        await client.get("/v1/tenants/acme/approvers?removed=true", headers=bearer(world.auditor))
    ).json()
    assert CFO.address in {a["address"] for a in listed}
    # an approver removed can be added back
    r = await client.post(
        "/v1/tenants/acme/approvers",
        json={"address": CFO.address, "roles": ["cfo"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text


async def test_cancel_by_the_agent_or_a_tenant_admin_only_while_pending(client):
    world = await setup(client)
    first = (await propose(client, world, pay("7800.00")))["action_id"]
    second = (await propose(client, world, pay("7900.00")))["action_id"]
    r = await client.delete(f"/v1/actions/{first}", headers=bearer(world.auditor))
    assert r.status_code == 403
    r = await client.delete(f"/v1/actions/{first}", headers=bearer(world.agent_token))
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["decision"] == "DENY"
    r = await client.delete(f"/v1/actions/{first}", headers=bearer(world.agent_token))
    assert r.status_code == 409 and r.json()["action_status"] == "cancelled"
    r = await client.delete(f"/v1/actions/{second}", headers=bearer(world.tenant_admin))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await answer(client, second, CFO, "cfo", signature="0x" + "00" * 65)
    assert r.status_code == 409 and r.json()["code"] == "action_not_pending"
    entries = [e for e in await verified_log(client, world) if e.type == "action.cancelled"]
    assert [e.actor.split(":")[0] for e in entries] == ["agent", "tenant_admin"]


async def test_listing_what_an_approver_can_act_on(client):
    world = await setup(client)
    small = (await propose(client, world, pay("7800.00")))["action_id"]
    big = (await propose(client, world, pay("60000.00")))["action_id"]
    await propose(client, world, pay("100.00"))

    async def pending(role: str) -> list[str]:
        r = await client.get(
            "/v1/actions",
            params={"status": "pending_approval", "role": role},
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 200, r.text
        return [a["action_id"] for a in r.json()["actions"]]

    assert await pending("cfo") == [big, small]
    assert await pending("controller") == [big]
    assert await pending("auditor") == []
    assert (await answer(client, small, CFO, "cfo")).status_code == 200
    assert await pending("cfo") == [big]


async def test_expiry_on_approval_on_read_and_by_the_sweeper(client, backend):
    from tests.integration.test_audit_log import database

    world = await setup(client)
    first = (await propose(client, world, pay("7800.00")))["action_id"]
    second = (await propose(client, world, pay("7900.00")))["action_id"]
    third = (await propose(client, world, pay("8000.00")))["action_id"]
    signature = sign(CFO, await request_for(client, first, "cfo"))
    async with database(backend) as db:
        async with db.transaction() as conn:  # time passes: the windows end
            await conn.execute(
                "UPDATE actions SET approval_expires_at = ? WHERE id IN (?, ?, ?)",
                "2020-01-01T00:00:00.000000Z", first, second, third,
            )  # fmt: skip
    # an approval after the window: refused, and the action is expired (with its audit entry)
    r = await answer(client, first, CFO, "cfo", signature=signature)
    assert r.status_code == 409 and r.json()["code"] == "approval_window_expired"
    assert (await action(client, world, first))["status"] == "expired"
    # a read after the window expires it
    record = await action(client, world, second)
    assert (
        record["status"] == "expired"
        and record["decision"] == "DENY"
        and record["reason"] == "approval_expired"
    )
    # the sweeper expires the rest without anyone asking
    async with database(backend) as db:  # a sweeper of its own (the app's runs on another loop)
        ledger = Ledger(db)
        try:
            assert await lifecycle.expire_overdue(db, ledger, "acme") == 1
            assert await lifecycle.expire_overdue(db, ledger, "acme") == 0
        finally:
            await ledger.close()
        async with db.read() as conn:
            row = await conn.fetchrow("SELECT status FROM actions WHERE id = ?", third)
    assert row["status"] == "expired"
    entries = [e for e in await verified_log(client, world) if e.type == "action.expired"]
    assert sorted(e.action_id for e in entries) == sorted([first, second, third])


async def test_concurrent_approvals_issue_exactly_one_verdict(client):
    world = await setup(client)
    for _ in range(3):
        action_id = (await propose(client, world, pay("60000.00")))["action_id"]
        signatures = [
            (account, role, sign(account, await request_for(client, action_id, role)))
            for account, role in ((CFO, "cfo"), (CONTROLLER, "controller"), (CEO, "ceo"), (BOTH, "cfo"))
        ]
        responses = await asyncio.gather(
            *(answer(client, action_id, a, role, signature=s) for a, role, s in signatures)
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 200, 409, 409], [r.text for r in responses]
        verdicts = [r.json()["signed_verdict"] for r in responses if r.status_code == 200]
        assert sum(v is not None for v in verdicts) == 1
        record = await action(client, world, action_id)
        assert record["status"] == "allowed" and len(record["approvals"]) == 2
    entries = await verified_log(client, world)
    assert sum(e.type == "verdict.issued" for e in entries) == 3


@pytest.mark.pg
async def test_concurrent_approvals_in_two_gateways_issue_exactly_one_verdict(backend):
    if backend.name != "postgresql":
        pytest.skip("two gateways share one database only on PostgreSQL")
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await setup(a)
        for _ in range(3):
            action_id = (await propose(a, world, pay("60000.00")))["action_id"]
            signed = [
                (account, role, sign(account, await request_for(a, action_id, role)))
                for account, role in (
                    (CFO, "cfo"),
                    (CONTROLLER, "controller"),
                    (CEO, "ceo"),
                    (BOTH, "controller"),
                )
            ]
            responses = await asyncio.gather(
                *(
                    answer(c, action_id, acc, role, signature=s)
                    for (acc, role, s), c in zip(signed, (a, b, a, b))
                )
            )
            assert sorted(r.status_code for r in responses) == [200, 200, 409, 409], [
                r.text for r in responses
            ]
        entries = await verified_log(a, world)
        assert sum(e.type == "verdict.issued" for e in entries) == 3
        assert sum(e.type == "approval.granted" for e in entries) == 6


async def test_tenant_rpc_url_is_stored_but_only_its_endpoint_is_shown(client):
    world = await setup(client)
    r = await client.patch(
        "/v1/tenants/acme",
        json={"rpc_url": "https://base.example.org/v3/SECRET-KEY"},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 200, r.text
    assert r.json()["rpc_endpoint"] == "https://base.example.org"
    assert "SECRET" not in json.dumps([e.data for e in await verified_log(client, world)])
    r = await client.patch(
        "/v1/tenants/acme", json={"rpc_url": "ftp://x"}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_rpc_url"
