"""Issue 3's policy language through the propose path, on both backends: action types (422 with
every violation, nothing created), summaries, risk, classifications, limits, history context and
the explain trace on the response, the action record and its audit entry."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.helpers import bearer, make_world, pay, verified_log

FEATURES = """\
schema: verdict.policy/v1
default: DENY
action_types:
  pay_invoice:
    summary: "Pay {amount} {asset} to {vendor} for {invoice_id}"
    parameters:
      type: object
      required: [type, amount, asset, vendor, invoice_id]
      additionalProperties: false
      properties:
        type: {const: pay_invoice}
        amount: {type: string, pattern: "^[0-9]{1,12}(\\\\.[0-9]{1,6})?$"}
        asset: {type: string}
        vendor: {type: string}
        invoice_id: {type: string, pattern: "^inv_[A-Za-z0-9]+$"}
  export_report:
    parameters:
      type: object
      required: [type, resource_type]
      properties:
        type: {const: export_report}
        resource_type: {type: string}
classifications:
  payroll: {tier: restricted, risk_modifier: "1.5"}
risk:
  factors:
    - {name: large-amount, match: {action.type: {eq: pay_invoice}, action.amount: {gt: "10000"}}, score: 30}
    - {name: new-vendor, match: {context.vendor.first_seen: {eq: true}}, score: 40}
rules:
  - id: cfo-over-5k
    decision: ESCALATE
    reason: amount_above_threshold
    match: {action.type: {eq: pay_invoice}, action.amount: {gt: "5000"}}
    approvals: {threshold: 1, roles: [cfo]}
  - id: allow-rest
    decision: ALLOW
    match: {}
limits:
  - id: daily-spend
    per: agent
    window: 24h
    sum: action.amount
    match: {action.type: {eq: pay_invoice}}
    max: "20000"
    decision: DENY
"""

# Only a limit: every payment is allowed until the agent's daily total would pass 20,000.
LIMIT_ONLY = """\
schema: verdict.policy/v1
default: DENY
rules:
  - {id: allow-payments, decision: ALLOW, match: {action.type: {eq: pay_invoice}}}
limits:
  - id: daily-spend
    per: agent
    window: 24h
    sum: action.amount
    max: "20000"
    decision: DENY
"""


async def propose(client: Any, world: Any, body: dict[str, Any], **params: Any):
    return await client.post(
        f"/v1/agents/{world.agent}/propose", json=body, params=params, headers=bearer(world.agent_token)
    )


async def record(client: Any, world: Any, action_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/actions/{action_id}", headers=bearer(world.auditor))
    assert r.status_code == 200, r.text
    return r.json()


async def test_parameters_breaking_the_schema_are_422_with_every_violation_and_create_nothing(client):
    world = await make_world(client, policy=FEATURES)
    before = len(await verified_log(client, world))
    # an amount (a plain decimal; "12,00" is refused earlier, `invalid_amount`) the schema's pattern refuses
    body = {
        "action": {"type": "pay_invoice", "amount": "12.0000001", "asset": "USDC", "vendor": "acme", "x": 1}
    }
    r = await propose(client, world, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "invalid_parameters"
    pointers = {v["pointer"] for v in problem["violations"]}
    assert {"/amount", ""} <= pointers  # the bad amount, the missing invoice and the extra field
    assert len(problem["violations"]) >= 3
    assert all(set(v) == {"pointer", "message"} for v in problem["violations"])
    assert len(await verified_log(client, world)) == before
    listed = (await client.get("/v1/actions", headers=bearer(world.auditor))).json()
    assert listed["actions"] == []


async def test_an_undeclared_type_follows_the_document(client):
    world = await make_world(client, policy=FEATURES)
    r = await propose(client, world, {"action": {"type": "wire_transfer", "amount": "5"}})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["decision"], out["reason"]) == ("DENY", "undeclared_action_type")


async def test_the_summary_approvers_sign_comes_from_the_type_template(client):
    world = await make_world(client, policy=FEATURES)
    out = (await propose(client, world, pay("7800.00"))).json()
    assert out["decision"] == "ESCALATE", out
    typed = (
        await client.get(f"/v1/actions/{out['action_id']}/approval-request", params={"role": "cfo"})
    ).json()
    assert typed["message"]["summary"] == "Pay 7,800.00 USDC to acme-supplies for inv_8231"
    assert (await record(client, world, out["action_id"]))["summary"] == typed["message"]["summary"]


async def test_risk_classification_limits_context_and_trace_are_answered_stored_and_audited(client):
    world = await make_world(client, policy=FEATURES)
    first = (await propose(client, world, pay("1200.00"))).json()
    assert first["decision"] == "ALLOW", first
    assert first["risk"] == {"score": 40, "level": "medium", "factors": [{"name": "new-vendor", "score": 40}]}
    assert first["context"] == {"vendor.first_seen": True}
    assert first["limits"] == [
        {"id": "daily-spend", "window": "24h", "key": "ap-bot", "total": "0", "amount": "1200.00",
         "max": "20000", "headroom": "20000", "tripped": False}
    ]  # fmt: skip
    assert first["classification"] is None  # a payment names no resource type
    rules = [c["rule"] for c in first["checks"]]
    assert rules[:2] == ["pay_invoice", "large-amount"] and "daily-spend" in rules

    second = (await propose(client, world, pay("15000.00"))).json()
    assert second["decision"] == "ESCALATE"
    assert second["context"] == {"vendor.first_seen": False}  # the first payment was allowed
    assert second["risk"]["score"] == 30 and second["risk"]["level"] == "low"
    assert second["limits"][0]["total"] == "1200.00" and second["limits"][0]["headroom"] == "18800.00"

    stored = await record(client, world, second["action_id"])
    for field in ("risk", "classification", "limits", "context", "checks"):
        assert stored[field] == second[field], field
    entry = next(e for e in await verified_log(client, world) if e.action_id == second["action_id"])
    for field in ("risk", "limits", "context"):
        assert entry.data[field] == second[field], field
    assert "checks" not in entry.data  # the trace is on the action row, derived, not logged
    assert "classification" not in entry.data  # only what the decision has

    export = (
        await propose(client, world, {"action": {"type": "export_report", "resource_type": "payroll"}})
    ).json()
    assert export["classification"] == {
        "resource_type": "payroll", "tier": "restricted", "risk_modifier": "1.5", "source": "policy"
    }  # fmt: skip


async def test_explain_false_leaves_out_the_trace(client):
    world = await make_world(client, policy=FEATURES)
    out = (await propose(client, world, pay("1200.00"), explain="false")).json()
    assert out["decision"] == "ALLOW" and out["checks"] is None
    assert out["risk"]["level"] == "medium"  # the rest of the decision is the same
    assert (await record(client, world, out["action_id"]))["checks"] is None
    entry = next(e for e in await verified_log(client, world) if e.action_id == out["action_id"])
    assert "checks" not in entry.data


async def test_a_policy_without_the_new_features_answers_as_before(client):
    world = await make_world(client)
    out = (await propose(client, world, pay("1200.00"))).json()
    assert out["decision"] == "ALLOW"
    assert out["risk"] is None and out["limits"] is None and out["context"] is None
    assert out["classification"] is None
    entry = next(e for e in await verified_log(client, world) if e.action_id == out["action_id"])
    assert not {"risk", "classification", "limits", "context"} & set(entry.data)


async def test_a_tripped_limit_denies_and_rejected_or_cancelled_actions_release_their_share(client):
    world = await make_world(client, policy=FEATURES)
    pending = (await propose(client, world, pay("15000.00"))).json()
    assert pending["decision"] == "ESCALATE"  # pending actions count
    out = (await propose(client, world, pay("6000.00"))).json()
    assert (out["decision"], out["reason"]) == ("DENY", "limit_exceeded:daily-spend")
    assert out["limits"][0]["tripped"] is True and out["limits"][0]["total"] == "15000.00"
    assert out["limits"][0]["headroom"] == "5000.00"
    # exactly at the maximum passes
    exact = (await propose(client, world, pay("5000.00"))).json()
    assert exact["decision"] == "ALLOW", exact
    assert (await propose(client, world, pay("0.01"))).json()["reason"] == "limit_exceeded:daily-spend"
    # cancelling the pending action releases its 15,000 (a denied proposal never counted)
    r = await client.delete(f"/v1/actions/{pending['action_id']}", headers=bearer(world.agent_token))
    assert r.status_code == 200, r.text
    again = (await propose(client, world, pay("6000.00"))).json()
    assert again["decision"] == "ESCALATE", again
    assert again["limits"][0]["total"] == "5000.00"


async def test_fifty_concurrent_proposals_pass_a_limit_exactly_twenty_times(client):
    world = await make_world(client, policy=LIMIT_ONLY)
    responses = await asyncio.gather(*(propose(client, world, pay("1000.00")) for _ in range(50)))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses if r.status_code != 201]
    decisions = [r.json() for r in responses]
    assert sum(d["decision"] == "ALLOW" for d in decisions) == 20
    assert {d["reason"] for d in decisions if d["decision"] == "DENY"} == {"limit_exceeded:daily-spend"}
    # every answer's total is the exact total it was committed at
    totals = sorted(d["limits"][0]["total"] for d in decisions if d["decision"] == "ALLOW")
    assert totals == sorted(f"{1000 * n}.00" if n else "0" for n in range(20))
    entries = await verified_log(client, world)
    assert sum(e.type == "verdict.issued" for e in entries) == 20


async def test_only_proposals_under_limits_take_the_locked_path(client):
    world = await make_world(client)  # no limits: the one-statement path stays
    writer_batches = None
    for _ in range(3):
        await asyncio.gather(*(propose(client, world, pay("10.00")) for _ in range(10)))
        writer_batches = dict(client.app_state.ledger.writer(world.tenant).batches)
    assert writer_batches is not None
    if client.app_state.db.supports_fast_append:
        assert writer_batches["fast"] > 0
        before = writer_batches["fast"]
        await asyncio.gather(*(propose(client, world, pay("10.00")) for _ in range(10)))
        assert client.app_state.ledger.writer(world.tenant).batches["fast"] > before


async def test_fifty_proposals_through_two_gateways_on_one_database_pass_a_limit_twenty_times(backend):
    first, second = create_app(backend.settings()), create_app(backend.settings())
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        a.app_state = first.state
        world = await make_world(a, policy=LIMIT_ONLY)
        responses = await asyncio.gather(
            *(propose(c, world, pay("1000.00")) for _ in range(25) for c in (a, b))
        )
        assert {r.status_code for r in responses} == {201}, [
            r.text for r in responses if r.status_code != 201
        ]
        assert sum(r.json()["decision"] == "ALLOW" for r in responses) == 20
        entries = await verified_log(a, world)
        assert sum(e.type == "verdict.issued" for e in entries) == 20


STRICTER = FEATURES.replace(
    "approvals: {threshold: 1, roles: [cfo]}", "approvals: {threshold: 2, roles: [cfo, ceo]}"
)
STRICTER = STRICTER.replace('summary: "Pay {amount}', 'summary: "Wire {amount}')


async def test_a_new_policy_version_never_changes_an_action_already_pending(client):
    from tests.integration.test_approvals import CFO, answer  # the approvals suite's wallets and signing

    world = await make_world(client, policy=FEATURES)
    r = await client.post(
        "/v1/tenants/acme/approvers",
        json={"address": CFO.address, "roles": ["cfo"]},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    pending = (await propose(client, world, pay("7800.00"))).json()
    assert pending["approvals_required"] == [{"rule": "cfo-over-5k", "threshold": 1, "roles": ["cfo"]}]
    before = await record(client, world, pending["action_id"])
    r = await client.post(
        "/v1/tenants/acme/policies",
        content=STRICTER.encode(),
        headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 201 and r.json()["version"] == 2, r.text
    # a new proposal gets the new requirements and summary
    fresh = (await propose(client, world, pay("7800.00"))).json()
    assert fresh["policy_version"] == 2 and fresh["approvals_required"][0]["threshold"] == 2
    assert (await record(client, world, fresh["action_id"]))["summary"].startswith("Wire 7,800.00")
    # the pending one keeps its version, hash, requirements and summary ...
    after = await record(client, world, pending["action_id"])
    for field in ("policy_version", "policy_hash", "approvals_required", "summary"):
        assert after[field] == before[field], field
    assert after["summary"] == "Pay 7,800.00 USDC to acme-supplies for inv_8231"
    # ... and one CFO approval (its old requirement) still allows it
    r = await answer(client, pending["action_id"], CFO, "cfo")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "allowed" and r.json()["signed_verdict"] is not None


HISTORY = """\
schema: verdict.policy/v1
default: DENY
rules:
  - id: new-vendor-review
    decision: ESCALATE
    reason: new_vendor
    match: {context.vendor.first_seen: {eq: true}}
    approvals: {threshold: 1, roles: [controller]}
  - id: busy-agent
    decision: DENY
    reason: busy
    when: 'int(context.agent.count["1h"]) >= 5'
  - id: big-spender
    decision: DENY
    reason: spent_too_much
    match: {context.agent.spend.24h: {gt: "3000"}}
  - {id: allow-rest, decision: ALLOW, match: {}}
"""


async def test_history_context_counts_allowed_vendors_and_the_agents_recent_spend(client):
    world = await make_world(client, policy=HISTORY)
    first = (await propose(client, world, pay("1000.00"))).json()
    assert first["decision"] == "ESCALATE" and first["reason"] == "new_vendor"
    assert first["context"] == {
        "agent.count.1h": 0, "agent.spend.24h": "0", "vendor.first_seen": True
    }  # fmt: skip
    # a pending payment does not make the vendor known, but counts as the agent's spend
    second = (await propose(client, world, pay("1500.50"))).json()
    assert second["reason"] == "new_vendor"
    assert second["context"]["agent.spend.24h"] == "1000.00" and second["context"]["agent.count.1h"] == 1
    other = (
        await propose(client, world, {"action": {"type": "note", "vendor": "x"}}, explain="false")
    ).json()
    assert other["context"]["agent.count.1h"] == 2
    third = (await propose(client, world, pay("600.00", vendor="globex"))).json()
    assert third["context"]["agent.spend.24h"] == "2500.50"
    assert third["reason"] == "new_vendor"
    fourth = (await propose(client, world, pay("1.00", vendor="globex"))).json()
    assert (fourth["decision"], fourth["reason"]) == ("DENY", "spent_too_much")
    assert fourth["context"]["agent.spend.24h"] == "3100.50"
    fifth = (await propose(client, world, pay("1.00", vendor="globex"))).json()
    assert fifth["context"]["agent.count.1h"] == 4  # the denied fourth counts for nothing
