"""`require_approval: true` on propose, on both backends: an ALLOW becomes ESCALATE for the
approvers the policy names (or any approver), a DENY stays DENY, the flag is logged and shown."""

from __future__ import annotations

from typing import Any

from eth_account import Account

from tests.integration.helpers import EXAMPLE_POLICY, bearer, make_world, pay, verified_log
from tests.integration.test_approvals import propose, sign

CFO = Account.from_key("0x" + "11" * 32)
CONTROLLER = Account.from_key("0x" + "22" * 32)

NAMED = (
    EXAMPLE_POLICY
    + """\
defaults:
  requested_approvals: {threshold: 1, roles: [controller]}
"""
)


async def world_with_approvers(client: Any, policy: str = EXAMPLE_POLICY):
    world = await make_world(client, policy=policy)
    for account, roles in ((CFO, ["cfo"]), (CONTROLLER, ["controller", "auditor-ish"])):
        r = await client.post(
            f"/v1/tenants/{world.tenant}/approvers",
            json={"address": account.address, "roles": roles},
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 201, r.text
    return world


async def test_allow_becomes_escalate_for_any_approver_and_approvers_see_why(client):
    world = await world_with_approvers(client)
    plain = await propose(client, world, pay("120.00"))
    assert plain["decision"] == "ALLOW"
    asked = await propose(client, world, {**pay("120.00"), "require_approval": True})
    assert asked["decision"] == "ESCALATE" and asked["status"] == "pending_approval"
    assert asked["reason"] == "approval_requested_by_agent"
    assert asked["signed_verdict"] is None
    assert asked["approvals_required"] == [
        {"rule": "approval_requested_by_agent", "threshold": 1, "roles": ["auditor-ish", "cfo", "controller"]}
    ]
    action_id = asked["action_id"]
    # what approvers see: the queue of their role, the flag, the reason, the sentence they sign
    r = await client.get(
        "/v1/actions", params={"status": "pending_approval", "role": "cfo"}, headers=bearer(world.auditor)
    )
    [listed] = r.json()["actions"]
    assert listed["action_id"] == action_id and listed["require_approval"] is True
    r = await client.get(f"/v1/actions/{plain['action_id']}", headers=bearer(world.auditor))
    assert r.json()["require_approval"] is False
    r = await client.get(
        f"/v1/actions/{action_id}/approval-request", params={"role": "cfo", "approve": "true"}
    )
    assert r.status_code == 200, r.text
    typed = r.json()
    assert typed["message"]["summary"].startswith("Review requested by agent ap-bot: ")
    r = await client.post(
        f"/v1/actions/{action_id}/approve", json={"approver_role": "cfo", "signature": sign(CFO, typed)}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "allowed" and r.json()["signed_verdict"] is not None
    # the audit entry carries the flag; the plain proposal's entry has no such field
    log = await verified_log(client, world)
    proposed = {e.action_id: e.data for e in log if e.type == "action.proposed"}
    assert proposed[action_id]["require_approval"] is True
    assert proposed[action_id]["reason"] == "approval_requested_by_agent"
    assert "require_approval" not in proposed[plain["action_id"]]


async def test_policy_names_who_reviews_requested_approvals(client):
    world = await world_with_approvers(client, NAMED)
    asked = await propose(client, world, {**pay("120.00"), "require_approval": True})
    assert asked["approvals_required"] == [
        {"rule": "approval_requested_by_agent", "threshold": 1, "roles": ["controller"]}
    ]
    r = await client.get(
        f"/v1/actions/{asked['action_id']}/approval-request", params={"role": "cfo", "approve": "true"}
    )
    assert r.status_code == 422 and r.json()["code"] == "role_not_required"


async def test_deny_and_escalate_are_untouched(client):
    world = await world_with_approvers(client, NAMED)
    denied = await propose(client, world, {**pay("120.00", vendor="evil-corp"), "require_approval": True})
    assert denied["decision"] == "DENY" and denied["reason"] == "vendor_blocked"
    escalated = await propose(client, world, {**pay("7800.00"), "require_approval": True})
    assert escalated["decision"] == "ESCALATE" and escalated["reason"] == "amount_above_threshold"
    assert [r["rule"] for r in escalated["approvals_required"]] == ["cfo-over-5k"]
    r = await client.get(f"/v1/actions/{denied['action_id']}", headers=bearer(world.auditor))
    assert r.json()["require_approval"] is True and r.json()["status"] == "denied"
    log = await verified_log(client, world)
    entry = next(e for e in log if e.type == "action.proposed" and e.action_id == denied["action_id"])
    assert entry.data["require_approval"] is True and entry.data["decision"] == "DENY"


async def test_no_approvers_means_nobody_can_approve(client):
    world = await make_world(client)
    asked = await propose(client, world, {**pay("120.00"), "require_approval": True})
    assert asked["decision"] == "ESCALATE"
    assert asked["approvals_required"][0]["roles"] == []


async def test_invalid_defaults_are_refused(client):
    world = await make_world(client, policy="")
    bad = EXAMPLE_POLICY + "defaults:\n  requested_approvals: {threshold: 0, roles: []}\n  other: 1\n"
    r = await client.post(
        f"/v1/tenants/{world.tenant}/policies",
        content=bad.encode(),
        headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 422 and r.json()["code"] == "policy_invalid"
    paths = {p["path"] for p in r.json()["problems"]}
    assert {"defaults.other", "defaults.requested_approvals.roles"} <= paths, paths
    r = await client.post(
        f"/v1/agents/{world.agent}/propose",
        json={**pay(), "require_approval": "yes"},
        headers=bearer(world.agent_token),
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"


async def test_the_console_shows_approvers_that_the_agent_asked(client):
    from tests.integration.test_console_sessions import sign_in

    world = await world_with_approvers(client)
    asked = await propose(client, world, {**pay("120.00"), "require_approval": True})
    plain = await propose(client, world, pay("7800.00"))
    assert (await sign_in(client, CFO)).status_code == 200
    page = await client.get(f"/console/actions/{asked['action_id']}")
    assert page.status_code == 200, page.text
    assert 'id="require-approval"' in page.text and "approval_requested_by_agent" in page.text
    assert "Review requested by agent ap-bot: " in page.text
    other = await client.get(f"/console/actions/{plain['action_id']}")
    assert other.status_code == 200 and 'id="require-approval"' not in other.text
