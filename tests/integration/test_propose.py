"""The decision path through the HTTP API, on both backends."""

from __future__ import annotations

import hashlib

import rfc8785
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from tests.integration.helpers import bearer, make_world, pay, verified_log


async def propose(client, world, body, agent=None, token=None):
    return await client.post(
        f"/v1/agents/{agent or world.agent}/propose", json=body, headers=bearer(token or world.agent_token)
    )


async def test_allow_returns_a_verdict_that_eth_account_verifies(client):
    world = await make_world(client, chain_id=8453, verifying_contract="0x" + "ab" * 20)
    body = pay("1200.00")
    r = await propose(client, world, body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["decision"] == "ALLOW" and out["status"] == "allowed"
    assert out["matched_rules"] == ["allow-rest"] and out["approvals_required"] is None
    assert out["policy_version"] == 1
    verdict = out["signed_verdict"]
    typed = verdict["typed_data"]
    assert typed["primaryType"] == "Verdict"
    assert typed["domain"] == {
        "name": "Verdict Gateway",
        "version": "1",
        "chainId": 8453,
        "verifyingContract": "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB",
    }
    message = typed["message"]
    # actionHash = keccak256(RFC 8785 canonical JSON of the action), computed independently here
    assert message["actionHash"] == "0x" + keccak(rfc8785.dumps(body["action"])).hex()
    assert (
        message["actionId"] == out["action_id"]
        and message["tenant"] == "acme"
        and message["agent"] == "ap-bot"
    )
    assert message["decision"] == 1 and message["policyVersion"] == 1
    assert message["expiresAt"] - message["issuedAt"] == 60
    recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=verdict["signature"])
    assert recovered == verdict["signer"]
    keys = (await client.get("/v1/keys")).json()
    assert keys["verdict_signers"][0]["address"] == verdict["signer"]
    assert keys["verdict_signers"][0]["status"] == "active"
    # the policy hash is 0x + SHA-256 of the RFC 8785 form of the published document
    detail = (await client.get("/v1/tenants/acme/policies/1", headers=bearer(world.auditor))).json()
    assert out["policy_hash"] == "0x" + hashlib.sha256(rfc8785.dumps(detail["document"])).hexdigest()
    assert message["policyHash"] == out["policy_hash"]


async def test_escalate_and_deny(client):
    world = await make_world(client)
    r = await propose(client, world, pay("7800.00"))
    assert r.status_code == 201
    out = r.json()
    assert (out["decision"], out["status"], out["reason"]) == (
        "ESCALATE",
        "pending_approval",
        "amount_above_threshold",
    )
    assert out["approvals_required"] == [{"rule": "cfo-over-5k", "threshold": 1, "roles": ["cfo"]}]
    assert out["signed_verdict"] is None

    out = (await propose(client, world, pay("60000"))).json()
    assert out["decision"] == "ESCALATE"
    assert out["approvals_required"] == [
        {"rule": "execs-over-50k", "threshold": 2, "roles": ["cfo", "controller", "ceo"]}
    ]

    out = (await propose(client, world, pay("60000", vendor="evil-corp"))).json()
    assert (out["decision"], out["status"], out["reason"]) == ("DENY", "denied", "vendor_blocked")
    assert out["signed_verdict"] is None and out["approvals_required"] is None
    assert set(out["matched_rules"]) == {"block-vendors", "execs-over-50k", "allow-rest"}


async def test_decimal_boundary_through_the_api(client):
    world = await make_world(client)
    assert (await propose(client, world, pay("5000"))).json()["decision"] == "ALLOW"
    assert (await propose(client, world, pay("5000.000000000000000000"))).json()["decision"] == "ALLOW"
    assert (await propose(client, world, pay("5000.000000000000000001"))).json()["decision"] == "ESCALATE"


async def test_missing_amount_fails_closed(client):
    world = await make_world(client)
    body = {"action": {"type": "pay_invoice", "vendor": "acme-supplies"}}
    out = (await propose(client, world, body)).json()
    assert out["decision"] == "DENY"
    assert out["reason"].startswith("policy_error:")


async def test_no_active_policy_denies(client):
    world = await make_world(client, policy="")
    out = (await propose(client, world, pay())).json()
    assert (out["decision"], out["reason"], out["policy_version"]) == ("DENY", "no_active_policy", None)


async def test_float_amount_is_refused_and_nothing_is_created(client):
    world = await make_world(client)
    before = len(await verified_log(client, world))
    r = await propose(client, world, {"action": {"type": "pay_invoice", "amount": 7800.5}})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "float_not_allowed"
    assert len(await verified_log(client, world)) == before
    listed = (await client.get("/v1/actions", headers=bearer(world.auditor))).json()
    assert listed["actions"] == []


async def test_bad_bodies_are_problems(client):
    world = await make_world(client)
    for body, code in [
        ({"action": {"amount": "1"}}, "invalid_action"),
        ({"action": {"type": ""}}, "invalid_action"),
    ]:
        r = await propose(client, world, body)
        assert (r.status_code, r.json()["code"]) == (422, code), r.text
    r = await propose(client, world, {"action": {"type": "x"}, "surprise": 1})
    assert (r.status_code, r.json()["code"]) == (400, "unknown_field")
    r = await client.post(
        f"/v1/agents/{world.agent}/propose",
        content=b"{not json",
        headers={**bearer(world.agent_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    r = await propose(client, world, {"action": {"type": "x", "n": 2**60}})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_action")


async def test_credentials_on_propose(client):
    world = await make_world(client)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay())
    assert (r.status_code, r.json()["code"]) == (401, "missing_credentials")
    r = await propose(client, world, pay(), token="vk_nope")
    assert (r.status_code, r.json()["code"]) == (401, "invalid_token")
    r = await propose(client, world, pay(), token=world.auditor)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")
    r = await propose(client, world, pay(), agent="someone-else")
    assert (r.status_code, r.json()["code"]) == (404, "agent_not_found")
    r = await propose(client, world, {**pay(), "tenant_id": "other"})
    assert (r.status_code, r.json()["code"]) == (404, "agent_not_found")
    r = await propose(client, world, {**pay(), "tenant_id": "acme"})
    assert r.status_code == 201


async def test_action_record_and_its_audit_entries(client):
    world = await make_world(client)
    out = (
        await propose(
            client,
            world,
            pay("1200.00"),
        )
    ).json()
    r = await client.get(f"/v1/actions/{out['action_id']}", headers=bearer(world.agent_token))
    assert r.status_code == 200
    record = r.json()
    assert record["action"] == pay("1200.00")["action"]
    assert record["signed_verdict"] == out["signed_verdict"]
    assert record["audit_event_ids"][0] == out["audit_event_id"]
    entries = {e.seq: e for e in await verified_log(client, world)}
    proposed, issued = (entries[i] for i in record["audit_event_ids"])
    assert (proposed.type, issued.type) == ("action.proposed", "verdict.issued")
    assert proposed.action_id == issued.action_id == out["action_id"]
    assert proposed.data["decision"] == "ALLOW" and proposed.data["policy_hash"] == out["policy_hash"]
    assert proposed.data["action"] == record["action"] and proposed.actor == "agent:ap-bot"
    assert issued.data["signature"] == out["signed_verdict"]["signature"]
    for token in (world.tenant_admin, world.auditor):
        assert (await client.get(f"/v1/actions/{out['action_id']}", headers=bearer(token))).status_code == 200
    r = await client.get(f"/v1/actions/{out['action_id']}", headers=bearer(world.admin_token))
    assert r.status_code == 403
    r = await client.get("/v1/actions/act_doesnotexist", headers=bearer(world.auditor))
    assert (r.status_code, r.json()["code"]) == (404, "action_not_found")


async def test_other_tenants_actions_answer_404(client):
    acme = await make_world(client, "acme")
    globex = await make_world(client, "globex")
    out = (await propose(client, acme, pay())).json()
    for token in (globex.agent_token, globex.auditor, globex.tenant_admin):
        r = await client.get(f"/v1/actions/{out['action_id']}", headers=bearer(token))
        assert (r.status_code, r.json()["code"]) == (404, "action_not_found")
    r = await client.get("/v1/actions", params={"tenant_id": "acme"}, headers=bearer(globex.auditor))
    assert r.status_code == 404
    # another agent of the same tenant does not see it either
    r = await client.post(
        "/v1/tenants/acme/agents", json={"id": "other-bot"}, headers=bearer(acme.tenant_admin)
    )
    other = r.json()["token"]
    r = await client.get(f"/v1/actions/{out['action_id']}", headers=bearer(other))
    assert r.status_code == 404


async def test_list_actions_filters_and_paginates(client):
    world = await make_world(client)
    ids = []
    for amount in ["1", "2", "7000", "3", "9000"]:
        ids.append((await propose(client, world, pay(amount))).json()["action_id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/actions", params=params, headers=bearer(world.auditor))).json()
        seen += [a["action_id"] for a in page["actions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    escalated = (
        await client.get("/v1/actions", params={"decision": "ESCALATE"}, headers=bearer(world.tenant_admin))
    ).json()["actions"]
    assert [a["action_id"] for a in escalated] == [ids[4], ids[2]]
    pending = (
        await client.get(
            "/v1/actions",
            params={"status": "pending_approval", "type": "pay_invoice"},
            headers=bearer(world.agent_token),
        )
    ).json()["actions"]
    assert len(pending) == 2
    r = await client.get("/v1/actions", params={"limit": 101}, headers=bearer(world.auditor))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_request")
    r = await client.get("/v1/actions", params={"from": "yesterday"}, headers=bearer(world.auditor))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_time")
    r = await client.get("/v1/actions", params={"cursor": "zzz"}, headers=bearer(world.auditor))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")
    future = (
        await client.get(
            "/v1/actions", params={"from": "2999-01-01T00:00:00Z"}, headers=bearer(world.auditor)
        )
    ).json()
    assert future == {"actions": [], "next_cursor": None}
