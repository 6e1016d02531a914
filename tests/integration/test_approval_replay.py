"""Replaying an approval onto another action: the codes docs/api.md promises, and nothing changes."""

from __future__ import annotations

from tests.integration.helpers import bearer, pay
from tests.integration.test_approvals import CFO, propose, request_for, setup, sign


async def test_approval_replayed_onto_another_action_is_refused_with_the_documented_codes(client):
    world = await setup(client)
    signed_for = (await propose(client, world, pay("7800.00")))["action_id"]
    other = (await propose(client, world, pay("7900.00")))["action_id"]
    signature = sign(CFO, await request_for(client, signed_for, "cfo"))
    # without `signer`, the signature recovers to an unrelated address over the other action's request
    r = await client.post(
        f"/v1/actions/{other}/approve", json={"approver_role": "cfo", "signature": signature}
    )
    assert r.status_code == 403 and r.json()["code"] == "not_an_approver", r.text
    assert "check that you signed this action's approval request" in r.json()["detail"]
    # naming the signer, the gateway can say the signature is not theirs over this request
    r = await client.post(
        f"/v1/actions/{other}/approve",
        json={"approver_role": "cfo", "signature": signature, "signer": CFO.address},
    )
    assert r.status_code == 422 and r.json()["code"] == "signature_mismatch", r.text
    record = (await client.get(f"/v1/actions/{other}", headers=bearer(world.auditor))).json()
    assert record["status"] == "pending_approval" and record["approvals"] == []
