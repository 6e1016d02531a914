"""The console's sign-in and sessions through the HTTP app, on both backends: Sign-In with
Ethereum signed by eth-account, single-use nonces, CSRF and origin checks, token exchange,
tenant binding, escaping, and the audit entries of signing in and out."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct

from tests.chain import unused_rpc_url
from tests.integration.helpers import bearer, pay, read_log
from tests.integration.test_approvals import CFO, STRANGER, propose, setup
from tests.integration.test_wallet_approvals import OWNERS, contract_world

XSS = "<img src=x onerror=alert(1)>"


def origin(client: Any) -> dict[str, str]:
    return {"Origin": str(client.base_url).rstrip("/")}


async def challenge(client: Any, account: Any, chain_id: int = 8453) -> dict[str, Any]:
    r = await client.post(
        "/console/sign-in/challenge",
        json={"address": account.address, "chain_id": chain_id},
        headers=origin(client),
    )
    assert r.status_code == 200, r.text
    return r.json()


def personal_sign(account: Any, message: str) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), account.key).signature).hex()


async def sign_in(client: Any, account: Any):
    issued = await challenge(client, account)
    return await client.post(
        "/console/sign-in/verify",
        json={"nonce": issued["nonce"], "signature": personal_sign(account, issued["message"])},
        headers=origin(client),
    )


async def test_the_sign_in_message_is_eip4361_and_single_use(client):
    await setup(client)
    issued = await challenge(client, CFO)
    lines = issued["message"].split("\n")
    assert lines[0] == "testserver.local wants you to sign in with your Ethereum account:"
    assert lines[1] == CFO.address
    assert "URI: http://testserver.local/console" in lines
    assert "Version: 1" in lines and "Chain ID: 8453" in lines and f"Nonce: {issued['nonce']}" in lines
    assert any(line.startswith("Issued At: ") for line in lines)
    assert any(line.startswith("Expiration Time: ") for line in lines)
    body = {"nonce": issued["nonce"], "signature": personal_sign(CFO, issued["message"])}
    r = await client.post("/console/sign-in/verify", json=body, headers=origin(client))
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/console" in cookie
    again = await client.post("/console/sign-in/verify", json=body, headers=origin(client))
    assert again.status_code == 422 and again.json()["code"] == "invalid_sign_in"


async def test_a_signature_by_another_key_or_a_stranger_opens_no_session(client):
    await setup(client)
    issued = await challenge(client, CFO)
    forged = {"nonce": issued["nonce"], "signature": personal_sign(STRANGER, issued["message"])}
    r = await client.post("/console/sign-in/verify", json=forged, headers=origin(client))
    assert r.status_code == 422 and r.json()["code"] == "invalid_sign_in"
    assert "set-cookie" not in r.headers
    r = await sign_in(client, STRANGER)
    assert r.status_code == 403 and r.json()["code"] == "sign_in_refused"


async def test_sign_in_from_another_origin_is_refused(client):
    await setup(client)
    r = await client.post(
        "/console/sign-in/challenge",
        json={"address": CFO.address, "chain_id": 1},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and r.json()["code"] == "cross_origin"


async def test_sessions_are_audited_csrf_protected_and_revocable(client):
    world = await setup(client)
    before = len(await read_log(client, world))
    r = await sign_in(client, CFO)
    assert r.status_code == 200
    page = await client.get("/console/queue")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    # sign-out without the CSRF token is refused and changes nothing
    r = await client.post("/console/sign-out", json={}, headers=origin(client))
    assert r.status_code == 403 and r.json()["code"] == "csrf_token_invalid"
    assert (await client.get("/console/queue")).status_code == 200
    r = await client.post("/console/sign-out", json={}, headers={**origin(client), "X-CSRF-Token": csrf})
    assert r.status_code == 200
    gone = await client.get("/console/queue", follow_redirects=False)
    assert gone.status_code in (302, 303, 307) and gone.headers["location"] == "/console/"
    entries = (await read_log(client, world))[before:]
    kinds = [e for e in entries if b"console.signed_" in e]
    assert len(kinds) == 2 and b"console.signed_in" in kinds[0] and b"console.signed_out" in kinds[1]


async def test_values_are_escaped_and_other_tenants_stay_invisible(client):
    world = await setup(client)
    other = await setup(client, tenant="globex")
    mine = (await propose(client, world, pay("7800.00", vendor=XSS)))["action_id"]
    theirs = (await propose(client, other, pay("7900.00")))["action_id"]
    # CFO approves in both tenants: the session is bound to the tenant chosen after signing in
    r = await sign_in(client, CFO)
    assert r.status_code == 200 and r.json()["tenant_id"] is None
    choose = await client.get("/console/")
    assert "globex" in choose.text and "acme" in choose.text
    csrf = choose.text.split('name="csrf-token" content="')[1].split('"')[0]
    r = await client.post(
        "/console/tenant", json={"tenant_id": "acme"}, headers={**origin(client), "X-CSRF-Token": csrf}
    )
    assert r.status_code == 200, r.text
    queue = await client.get("/console/queue?view=awaiting")
    assert mine in queue.text and theirs not in queue.text
    assert XSS not in queue.text and "&lt;img src=x onerror=alert(1)&gt;" in queue.text
    assert (await client.get(f"/console/actions/{theirs}")).status_code == 404
    assert (await client.get(f"/console/actions/{theirs}/proof")).status_code == 404


async def test_an_auditor_token_opens_a_read_only_session(client):
    world = await setup(client)
    action_id = (await propose(client, world, pay("7800.00")))["action_id"]
    r = await client.post("/console/sign-in/token", json={"token": world.agent_token}, headers=origin(client))
    assert r.status_code == 403 and r.json()["code"] == "sign_in_refused"
    r = await client.post("/console/sign-in/token", json={"token": world.auditor}, headers=origin(client))
    assert r.status_code == 200
    page = await client.get(f"/console/actions/{action_id}")
    assert page.status_code == 200 and 'id="approve"' not in page.text and "read-only" in page.text
    proof = await client.get(f"/console/actions/{action_id}/proof")
    assert proof.status_code == 200 and proof.json()["format"]
    # revoking the API key ends the console session at once
    keys = (await client.get("/v1/tenants/acme/api-keys", headers=bearer(world.tenant_admin))).json()
    auditor_key = next(k["id"] for k in keys if k["role"] == "auditor")
    r = await client.delete(f"/v1/tenants/acme/api-keys/{auditor_key}", headers=bearer(world.tenant_admin))
    assert r.status_code == 204
    assert (await client.get("/console/queue", follow_redirects=False)).status_code in (302, 303, 307)


async def test_a_nonce_raced_by_two_sign_ins_opens_one_session(client):
    import asyncio

    await setup(client)
    issued = await challenge(client, CFO)
    body = {"nonce": issued["nonce"], "signature": personal_sign(CFO, issued["message"])}
    answers = await asyncio.gather(
        *(client.post("/console/sign-in/verify", json=body, headers=origin(client)) for _ in range(4))
    )
    assert sorted(r.status_code for r in answers) == [200, 422, 422, 422]


async def test_a_contract_wallet_signs_in_through_is_valid_signature(client, contract_chain):
    """EIP-1271: a 2-of-3 contract approver's owners sign the sign-in message; one owner is not
    enough; its chain unreachable → 503 and no session."""
    world, wallet = await contract_world(client, contract_chain)

    async def attempt(*owners: Any) -> Any:
        issued = await client.post(
            "/console/sign-in/challenge", json={"address": wallet, "chain_id": 8453}, headers=origin(client)
        )
        assert issued.status_code == 200, issued.text
        message = issued.json()["message"]
        hashed = defunct_hash_message(text=message)
        signature = (
            "0x" + b"".join(bytes(Account.unsafe_sign_hash(hashed, o.key).signature) for o in owners).hex()
        )
        body = {"nonce": issued.json()["nonce"], "signature": signature}
        return await client.post("/console/sign-in/verify", json=body, headers=origin(client))

    r = await attempt(OWNERS[0])
    assert r.status_code == 403 and r.json()["code"] == "sign_in_refused", r.text
    assert "set-cookie" not in r.headers
    r = await attempt(OWNERS[0], OWNERS[2])
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == "acme"
    queue = await client.get("/console/queue")
    assert queue.status_code == 200 and "Awaiting me" in queue.text
    client.cookies.clear()

    r = await client.patch(
        "/v1/tenants/acme", json={"rpc_url": unused_rpc_url()}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 200, r.text
    r = await attempt(OWNERS[0], OWNERS[2])
    assert r.status_code == 503, r.text
    assert "set-cookie" not in r.headers
